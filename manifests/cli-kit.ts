import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EXIT, ShoalError } from './errors.js';

export { EXIT };

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
    // Node's own wording is long and talks of positionals; say what is wrong in one line.
    const m = /^Unknown option '([^']*)'/.exec((e as Error).message);
    throw new ShoalError('usage', m ? `unknown option ${m[1]} (see --help)` : (e as Error).message.split('\n')[0]!);
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
    return e.exit;
  }
  io.err(`shoal: error [internal]: ${(e as Error)?.stack ?? String(e)}`);
  return EXIT.error;
}
