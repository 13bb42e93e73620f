/**
 * One catalogue of stable error codes for everything shoal rejects. Codes are
 * part of the public contract (CLI output, API bodies, tests): never rename one.
 */
export const VERIFY_CODES = [
  'bad-signature',
  'unknown-key',
  'threshold-not-met',
  'duplicate-keyid',
  'expired',
  'rollback',
  'malformed',
  'too-large',
  'unsupported-schema',
  'inconsistent',
] as const;
export type VerifyCode = (typeof VERIFY_CODES)[number];

export const OTHER_CODES = [
  'usage',
  'io',
  'file-mismatch',
  'bad-key',
  'key-exists',
  'not-found',
  'bad-config',
  'bad-request',
  'unauthorized',
  'peer-error',
  'origin-error',
  'chunk-mismatch',
  'blob-mismatch',
  'no-space',
  'permission-denied',
  'aborted',
  'timeout',
  'unavailable',
  'internal',
] as const;
export type ErrorCode = VerifyCode | (typeof OTHER_CODES)[number];

export class ShoalError extends Error {
  readonly code: ErrorCode;
  /** JSON path of the offending field for document errors, e.g. `$.signed.files[2].size`. */
  readonly path: string | undefined;
  constructor(code: ErrorCode, message: string, opts: { path?: string; cause?: unknown } = {}) {
    super(opts.path ? `${message} (at ${opts.path})` : message, { cause: opts.cause });
    this.name = 'ShoalError';
    this.code = code;
    this.path = opts.path;
  }
}

export function isShoalError(e: unknown, code?: ErrorCode): e is ShoalError {
  return e instanceof ShoalError && (code === undefined || e.code === code);
}

/** Maps a Node system error onto the catalogue, keeping the original as cause. */
export function fromSystemError(e: unknown, what: string): ShoalError {
  if (e instanceof ShoalError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const msg = (e as Error | undefined)?.message ?? String(e);
  if (code === 'ENOSPC' || code === 'EDQUOT') return new ShoalError('no-space', `${what}: no space left on device`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return new ShoalError('permission-denied', `${what}: permission denied`, { cause: e });
  if (code === 'ENOENT') return new ShoalError('not-found', `${what}: not found`, { cause: e });
  return new ShoalError('io', `${what}: ${msg}`, { cause: e });
}
