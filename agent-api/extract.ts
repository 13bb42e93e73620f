/**
 * Safe extraction of a verified tar bundle. Only regular files and
 * directories; absolute paths, `..`, NUL, backslashes, links of any kind,
 * devices and FIFOs are refused; entry count and sizes are capped. Everything
 * lands in a fresh staging folder beside the target, which is renamed into
 * place only when the whole archive was read and accepted, so a refused or
 * broken archive writes nothing outside staging.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { syncDir } from '../manifests/atomic-file.js';
import { ShoalError } from '../daemon/errors.js';

export interface ExtractLimits {
  maxEntries: number;
  maxEntryBytes: number;
  maxTotalBytes: number;
}

export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = { maxEntries: 100_000, maxEntryBytes: 2 ** 40, maxTotalBytes: 2 ** 42 };

const refuse = (why: string) => new ShoalError('bad-request', `unsafe bundle: ${why}`);

/** The entry's path as safe relative segments, or a refusal. */
export function entrySegments(name: string): string[] {
  if (name.includes('\0')) throw refuse(`entry name contains NUL`);
  if (name.includes('\\')) throw refuse(`entry ${JSON.stringify(name)} contains a backslash`);
  if (name.startsWith('/')) throw refuse(`entry ${JSON.stringify(name)} is an absolute path`);
  const segs = name.split('/').filter((s) => s !== '' && s !== '.');
  if (segs.some((s) => s === '..')) throw refuse(`entry ${JSON.stringify(name)} climbs out with ".."`);
  // eslint-disable-next-line no-control-regex
  if (segs.some((s) => /[\u0000-\u001f]/.test(s) || s.length > 255)) throw refuse(`entry ${JSON.stringify(name)} has an invalid name`);
  return segs;
}

/** mkdir -p inside staging; a file standing where a directory must be is a refusal. */
async function mkdirs(dir: string) {
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') throw refuse('a path is used both as a file and as a directory');
    throw e;
  }
}

/**
 * Reads tar streams one after the other into one staging folder, then renames it
 * to `dest` (an existing `dest` is swapped out and removed). `accept` runs last:
 * it may reject (e.g. the bytes' hash did not match) and then nothing is moved.
 */
export async function extractBundles(streams: Array<() => Promise<Readable>>, dest: string, opts: { limits?: Partial<ExtractLimits>; accept?: () => Promise<void> | void } = {}): Promise<{ files: number; bytes: number }> {
  const limits = { ...DEFAULT_EXTRACT_LIMITS, ...opts.limits };
  const parent = path.dirname(path.resolve(dest));
  const staging = path.join(parent, `.${path.basename(dest)}.shoal-staging-${randomBytes(4).toString('hex')}`);
  await fs.mkdir(staging, { mode: 0o755 });
  let files = 0;
  let entries = 0;
  let total = 0;
  try {
    for (const open of streams) {
      const source = await open();
      const ex = tar.extract();
      const done = (async () => {
        for await (const entry of ex) {
          const h = entry.header;
          if (++entries > limits.maxEntries) throw refuse(`more than ${limits.maxEntries} entries`);
          const segs = entrySegments(h.name);
          if (h.type !== 'file' && h.type !== 'directory') throw refuse(`entry ${JSON.stringify(h.name)} is a ${h.type ?? 'unknown type'}; only regular files and directories are allowed`);
          const target = path.join(staging, ...segs);
          if (h.type === 'directory') {
            if (segs.length) await mkdirs(target);
            entry.resume();
            continue;
          }
          if (!segs.length) throw refuse('a file entry with an empty name');
          const size = h.size ?? 0;
          if (size > limits.maxEntryBytes) throw refuse(`entry ${JSON.stringify(h.name)} is ${size} bytes, more than ${limits.maxEntryBytes}`);
          total += size;
          if (total > limits.maxTotalBytes) throw refuse(`more than ${limits.maxTotalBytes} bytes in all`);
          await mkdirs(path.dirname(target));
          // Owners are ignored; modes keep only the owner/group/other read and execute bits
          // (no setuid/setgid/sticky, no write for group or other). `wx` never follows or reuses a path.
          const mode = ((h.mode ?? 0o644) & 0o755) | 0o600;
          await pipeline(entry, createWriteStream(target, { flags: 'wx', mode }));
          files++;
        }
      })();
      await Promise.all([pipeline(source, ex), done]);
    }
    await opts.accept?.();
  } catch (e) {
    await fs.rm(staging, { recursive: true, force: true });
    if (e instanceof ShoalError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw refuse('the same path appears twice');
    if (code === 'ENOTDIR' || code === 'EISDIR') throw refuse('a path is used both as a file and as a directory');
    throw refuse(`the archive cannot be read: ${(e as Error).message}`);
  }
  // Swap into place: a rename within one folder is atomic.
  const old = path.join(parent, `.${path.basename(dest)}.shoal-old-${randomBytes(4).toString('hex')}`);
  const had = await fs.rename(dest, old).then(() => true, (e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return false;
    throw e;
  });
  await fs.rename(staging, dest);
  await syncDir(parent);
  if (had) await fs.rm(old, { recursive: true, force: true });
  return { files, bytes: total };
}
