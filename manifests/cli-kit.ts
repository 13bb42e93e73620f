import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ShoalError, type ErrorCode } from './errors.js';

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

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'usage': return EXIT.usage;
    case 'malformed': case 'too-large': case 'unsupported-schema': case 'inconsistent': return EXIT.invalid;
    case 'bad-signature': case 'unknown-key': case 'threshold-not-met': case 'duplicate-keyid': return EXIT.untrusted;
    case 'expired': return EXIT.expired;
    case 'rollback': return EXIT.rollback;
    case 'file-mismatch': case 'chunk-mismatch': case 'blob-mismatch': return EXIT.mismatch;
    case 'bad-key': case 'key-exists': return EXIT.key;
    case 'unavailable': return EXIT.unreachable;
    default: return EXIT.error;
  }
}

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

export const stdio: Io = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

/** parseArgs with usage errors as ShoalError and `--help` detection. */
export function args<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = true) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (e) {
    throw new ShoalError('usage', (e as Error).message);
  }
}

export function required<T>(v: T | undefined, flag: string): T {
  if (v === undefined || v === '') throw new ShoalError('usage', `${flag} is required`);
  return v;
}

export function int(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text)) throw new ShoalError('usage', `${flag} must be a whole number ≥ 0, got "${text}"`);
  return Number(text);
}

export { writeFileAtomic } from './atomic-file.js';

export function reportError(io: Io, e: unknown): number {
  if (e instanceof ShoalError) {
    io.err(`shoal: error [${e.code}]: ${e.message}`);
    return exitCodeFor(e.code);
  }
  io.err(`shoal: error [internal]: ${(e as Error)?.stack ?? String(e)}`);
  return EXIT.error;
}
