import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { createWriteStream } from 'node:fs';
import { sha256Hex, canonicalBytes } from './canonical.js';
import { DEFAULT_CHUNK_SIZE, digestFile } from './chunker.js';
import { ShoalError, fromSystemError } from './errors.js';
import type { SigningKey } from './keys.js';
import { MANIFEST_SCHEMA, NAME_RE, VERSION_RE, unsafePathReason, type Envelope, type ManifestBody, type ManifestFile } from './schema.js';
import { signEnvelope } from './sign.js';

export interface PublishOptions {
  inputs: string[];
  name: string;
  version: string;
  sequence: number;
  keys: SigningKey[];
  baseUrl?: string;
  /** Explicit URL per manifest path; wins over baseUrl. */
  urls?: Record<string, string>;
  chunkSize?: number;
  expiresInMs: number;
  /** Pack all inputs into one tar written to bundleDir and publish that. */
  bundle?: boolean;
  bundleDir?: string;
  /** The single input is already a tar bundle. */
  tar?: boolean;
  now?: Date;
}

interface Source {
  /** Path inside the artifact. */
  rel: string;
  abs: string;
  mode: number;
}

/** Expands files and directories into artifact paths; only regular files are allowed. */
export async function collectSources(inputs: string[]): Promise<Source[]> {
  const out: Source[] = [];
  const walk = async (abs: string, rel: string): Promise<void> => {
    const st = await fs.lstat(abs).catch((e) => { throw fromSystemError(e, abs); });
    if (st.isDirectory()) {
      const names = (await fs.readdir(abs)).sort();
      for (const n of names) await walk(path.join(abs, n), rel ? `${rel}/${n}` : n);
    } else if (st.isFile()) {
      out.push({ rel, abs, mode: st.mode & 0o777 });
    } else {
      throw new ShoalError('usage', `${abs}: only regular files and directories can be published (links and devices are refused)`);
    }
  };
  for (const input of inputs) {
    const st = await fs.lstat(input).catch((e) => { throw fromSystemError(e, input); });
    await walk(input, st.isDirectory() ? '' : path.basename(input));
  }
  if (out.length === 0) throw new ShoalError('usage', 'nothing to publish: the inputs hold no files');
  const seen = new Set<string>();
  for (const s of out) {
    const why = unsafePathReason(s.rel);
    if (why) throw new ShoalError('usage', `cannot publish ${JSON.stringify(s.rel)}: path ${why}`);
    if (seen.has(s.rel)) throw new ShoalError('usage', `two inputs would both be published as ${JSON.stringify(s.rel)}`);
    seen.add(s.rel);
  }
  return out;
}

/** Streams the sources into one tar file (regular files only, owners dropped, modes masked). */
export async function writeBundle(sources: Source[], dest: string, mtime: Date): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(dest, { mode: 0o644 }));
  done.catch(() => {});
  try {
    for (const s of sources) {
      const st = await fs.stat(s.abs);
      const mode = s.mode & 0o111 ? 0o755 : 0o644;
      await new Promise<void>((resolve, reject) => {
        const entry = pack.entry({ name: s.rel, size: st.size, mode, mtime, type: 'file' }, (err) => (err ? reject(err) : resolve()));
        pipeline(createReadStream(s.abs), entry).catch(reject);
      });
    }
    pack.finalize();
    await done;
  } catch (e) {
    pack.destroy();
    await fs.rm(dest, { force: true });
    throw fromSystemError(e, `writing bundle ${dest}`);
  }
}

export function fileUrl(baseUrl: string, rel: string): string {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  return new URL(rel.split('/').map(encodeURIComponent).join('/'), base).toString();
}

export interface Published {
  envelope: Envelope<ManifestBody>;
  id: string;
  bundlePath?: string;
}

export async function publish(o: PublishOptions): Promise<Published> {
  if (!NAME_RE.test(o.name)) throw new ShoalError('usage', `--name ${JSON.stringify(o.name)}: use letters, digits, . _ + - (at most 128)`);
  if (!VERSION_RE.test(o.version)) throw new ShoalError('usage', `--version ${JSON.stringify(o.version)}: use letters, digits, . _ + ~ - (at most 128)`);
  if (!Number.isSafeInteger(o.sequence) || o.sequence < 0) throw new ShoalError('usage', '--sequence must be a whole number ≥ 0');
  if (o.bundle && o.tar) throw new ShoalError('usage', '--bundle and --tar do not go together');
  const now = o.now ?? new Date();
  let sources = await collectSources(o.inputs);
  let bundlePath: string | undefined;
  if (o.tar && sources.length !== 1) throw new ShoalError('usage', '--tar takes exactly one tar file');
  if (o.bundle) {
    const rel = `${o.name}-${o.version}.tar`;
    bundlePath = path.join(o.bundleDir ?? '.', rel);
    await writeBundle(sources, bundlePath, now);
    sources = [{ rel, abs: bundlePath, mode: 0o644 }];
  }
  const files: ManifestFile[] = [];
  for (const s of sources) {
    const url = o.urls?.[s.rel] ?? (o.baseUrl ? fileUrl(o.baseUrl, s.rel) : undefined);
    const d = await digestFile(s.abs, o.chunkSize ?? DEFAULT_CHUNK_SIZE);
    const f: ManifestFile = { path: s.rel, size: d.size, sha256: d.sha256, chunkSize: o.chunkSize ?? DEFAULT_CHUNK_SIZE, chunks: d.chunks, urls: url ? [url] : [] };
    if (o.bundle || o.tar) f.type = 'tar';
    files.push(f);
  }
  const body: ManifestBody = {
    schema: MANIFEST_SCHEMA,
    name: o.name,
    version: o.version,
    sequence: o.sequence,
    created: now.toISOString(),
    expires: new Date(now.getTime() + o.expiresInMs).toISOString(),
    files,
  };
  const envelope = signEnvelope(body, o.keys);
  return { envelope, id: sha256Hex(canonicalBytes(body)), ...(bundlePath ? { bundlePath } : {}) };
}
