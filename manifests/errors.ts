/**
 * The error catalogue: every stable code shoal reports, each defined once
 * with a one-line summary, the HTTP status an API answers it with, and the
 * exit code of the CLI (docs/formats.md lists them all). Codes are part of the
 * public contract (CLI output, API bodies, scripts): never rename one.
 *
 * Each room defines its own codes with defineErrors (this file: documents,
 * keys and the generic ones; daemon/errors.ts: the daemon's and the agent
 * API's), into this one table; a code defined twice fails at load.
 */

/** Exit codes of every `shoal` verb (docs/cli.md). Stable: scripts depend on them. */
export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  invalid: 3,
  untrusted: 4,
  expired: 5,
  rollback: 6,
  mismatch: 7,
  key: 8,
  unreachable: 10,
  failed: 11,
} as const;

export interface ErrorSpec {
  /** What the code means, in one line (the message when a throw gives no detail). */
  summary: string;
  http: number;
  exit: number;
}

/** Every defined code; each room's catalogue adds its own (declaration merging). */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface ErrorCodes extends CodesOf<typeof BASE_ERRORS> {}
export type ErrorCode = keyof ErrorCodes & string;
export type CodesOf<T> = { [K in keyof T]: true };

const catalogue = new Map<string, ErrorSpec>();

export function defineErrors<const T extends Record<string, ErrorSpec>>(specs: T): T {
  for (const [code, spec] of Object.entries(specs)) {
    if (catalogue.has(code)) throw new Error(`error code ${code} is defined twice`);
    catalogue.set(code, spec);
  }
  return specs;
}

/** The catalogue entry of a code (an unknown code, as from a newer peer, is treated as internal). */
export function errorSpec(code: string): ErrorSpec {
  return catalogue.get(code) ?? catalogue.get('internal')!;
}

/** All codes and their entries, for docs and tests. */
export function allErrors(): ReadonlyMap<string, ErrorSpec> {
  return catalogue;
}

const BASE_ERRORS = defineErrors({
  // documents: manifests, channels, archives
  'bad-signature': { summary: 'a signature does not verify', http: 403, exit: EXIT.untrusted },
  'unknown-key': { summary: 'signed by a key that is not trusted', http: 403, exit: EXIT.untrusted },
  'threshold-not-met': { summary: 'fewer trusted signatures than the threshold', http: 403, exit: EXIT.untrusted },
  'duplicate-keyid': { summary: 'two signatures name the same key', http: 403, exit: EXIT.untrusted },
  expired: { summary: 'the document has expired', http: 403, exit: EXIT.expired },
  rollback: { summary: 'older than a version already accepted', http: 409, exit: EXIT.rollback },
  malformed: { summary: 'not a well-formed document', http: 400, exit: EXIT.invalid },
  'too-large': { summary: 'larger than allowed', http: 413, exit: EXIT.invalid },
  'unsupported-schema': { summary: 'a schema this version does not know', http: 400, exit: EXIT.invalid },
  inconsistent: { summary: 'the parts of the document contradict each other', http: 400, exit: EXIT.invalid },
  'file-mismatch': { summary: 'a file does not match the manifest', http: 409, exit: EXIT.mismatch },
  // keys
  'bad-key': { summary: 'not a usable key', http: 400, exit: EXIT.key },
  'key-exists': { summary: 'a key file is already there', http: 409, exit: EXIT.key },
  // generic
  usage: { summary: 'wrong arguments', http: 400, exit: EXIT.usage },
  'bad-config': { summary: 'a setting is invalid', http: 400, exit: EXIT.error },
  'not-found': { summary: 'no such thing', http: 404, exit: EXIT.error },
  io: { summary: 'a file could not be read or written', http: 500, exit: EXIT.error },
  'no-space': { summary: 'no space left (disk or cache budget)', http: 507, exit: EXIT.error },
  'permission-denied': { summary: 'permission denied', http: 403, exit: EXIT.error },
  internal: { summary: 'internal error', http: 500, exit: EXIT.error },
});

export class ShoalError extends Error {
  readonly code: ErrorCode;
  /** JSON path of the offending field for document errors, e.g. `$.signed.files[2].size`. */
  readonly path: string | undefined;
  constructor(code: ErrorCode, message?: string, opts: { path?: string; cause?: unknown } = {}) {
    const text = message ?? errorSpec(code).summary;
    super(opts.path ? `${text} (at ${opts.path})` : text, { cause: opts.cause });
    this.name = 'ShoalError';
    this.code = code;
    this.path = opts.path;
  }

  get http(): number {
    return errorSpec(this.code).http;
  }

  get exit(): number {
    return errorSpec(this.code).exit;
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
