import { chunkCount, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from './chunker.js';
import { ShoalError } from './errors.js';

export const MANIFEST_SCHEMA = 'shoal.manifest/v1';
export const CHANNEL_SCHEMA = 'shoal.channel/v1';

export interface ManifestFile {
  path: string;
  size: number;
  sha256: string;
  chunkSize: number;
  chunks: string[];
  urls: string[];
  type?: 'file' | 'tar';
}

export interface ManifestBody {
  schema: typeof MANIFEST_SCHEMA;
  name: string;
  version: string;
  sequence: number;
  created: string;
  expires: string;
  files: ManifestFile[];
}

export interface ChannelBody {
  schema: typeof CHANNEL_SCHEMA;
  channel: string;
  name: string;
  sequence: number;
  manifestId: string;
  manifestUrl: string;
  expires: string;
}

export interface Signature {
  keyid: string;
  sig: string;
}

export interface Envelope<T> {
  signed: T;
  signatures: Signature[];
}

export interface Limits {
  maxBytes: number;
  maxFiles: number;
  maxChunks: number;
  maxSignatures: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxBytes: 32 << 20,
  maxFiles: 10_000,
  maxChunks: 1 << 20,
  maxSignatures: 32,
};

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
export const VERSION_RE = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$/;
export const HEX64_RE = /^[0-9a-f]{64}$/;
const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const MAX_SIZE = 2 ** 50;

const malformed = (path: string, why: string) => new ShoalError('malformed', why, { path });

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks v is an object with exactly the given keys (optional ones may be absent). */
function fields(v: unknown, path: string, required: string[], optional: string[] = []): Record<string, unknown> {
  if (!isPlainObject(v)) throw malformed(path, 'must be an object');
  for (const k of required) if (!Object.hasOwn(v, k)) throw malformed(`${path}.${k}`, 'is required');
  for (const k of Object.keys(v)) {
    if (!required.includes(k) && !optional.includes(k)) throw malformed(`${path}.${k}`, 'is not a known field');
  }
  return v;
}

function str(v: unknown, path: string, re?: RegExp, max = 4096): string {
  if (typeof v !== 'string') throw malformed(path, 'must be a string');
  if (v.length > max) throw malformed(path, `must be at most ${max} characters`);
  if (re && !re.test(v)) throw malformed(path, `has an invalid format (expected ${re.source})`);
  return v;
}

function int(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw malformed(path, `must be a whole number from ${min} to ${max}`);
  }
  return v;
}

function time(v: unknown, path: string): number {
  const s = str(v, path, TIME_RE, 40);
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw malformed(path, 'is not a valid time');
  return t;
}

function arr(v: unknown, path: string, max: number): unknown[] {
  if (!Array.isArray(v)) throw malformed(path, 'must be an array');
  if (v.length > max) throw new ShoalError('too-large', `has ${v.length} entries, more than the limit of ${max}`, { path });
  return v;
}

function httpUrl(v: unknown, path: string): string {
  const s = str(v, path, undefined, 2048);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw malformed(path, 'is not a URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw malformed(path, 'must be an http or https URL');
  return s;
}

/**
 * A file path inside an artifact: relative, POSIX separators, no empty, `.` or
 * `..` segment, no backslash or control character. Returns why it is unsafe.
 */
export function unsafePathReason(p: string): string | undefined {
  if (p.length === 0 || p.length > 1024) return 'must be 1 to 1024 characters';
  if (p.startsWith('/')) return 'must be relative';
  if (p.includes('\\')) return 'must not contain a backslash';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(p)) return 'must not contain control characters';
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') return 'must not contain empty, "." or ".." segments';
    if (seg.length > 255) return 'has a segment longer than 255 characters';
  }
  return undefined;
}

function signatures(v: unknown, path: string, limits: Limits): Signature[] {
  return arr(v, path, limits.maxSignatures).map((s, i) => {
    const p = `${path}[${i}]`;
    const o = fields(s, p, ['keyid', 'sig']);
    return { keyid: str(o.keyid, `${p}.keyid`, HEX64_RE), sig: str(o.sig, `${p}.sig`, /^[A-Za-z0-9+/]{86}==$/) };
  });
}

function schemaOf(signed: unknown, expected: string): void {
  if (!isPlainObject(signed)) throw malformed('$.signed', 'must be an object');
  if (signed.schema !== expected) {
    throw new ShoalError('unsupported-schema', `schema is ${JSON.stringify(signed.schema)}, expected "${expected}"`, { path: '$.signed.schema' });
  }
}

export function envelopeOf(doc: unknown, limits: Limits): { signed: unknown; signatures: Signature[] } {
  const o = fields(doc, '$', ['signed', 'signatures']);
  return { signed: o.signed, signatures: signatures(o.signatures, '$.signatures', limits) };
}

export function validateManifestBody(signed: unknown, limits: Limits = DEFAULT_LIMITS): ManifestBody {
  schemaOf(signed, MANIFEST_SCHEMA);
  const p = '$.signed';
  const o = fields(signed, p, ['schema', 'name', 'version', 'sequence', 'created', 'expires', 'files']);
  const created = time(o.created, `${p}.created`);
  const expires = time(o.expires, `${p}.expires`);
  const rawFiles = arr(o.files, `${p}.files`, limits.maxFiles);
  // Count chunks before walking them so a huge document costs little to refuse.
  let total = 0;
  rawFiles.forEach((f) => {
    if (isPlainObject(f) && Array.isArray(f.chunks)) total += f.chunks.length;
  });
  if (total > limits.maxChunks) {
    throw new ShoalError('too-large', `lists ${total} chunks, more than the limit of ${limits.maxChunks}`, { path: `${p}.files` });
  }
  const seen = new Set<string>();
  const files = rawFiles.map((f, i): ManifestFile => {
    const fp = `${p}.files[${i}]`;
    const fo = fields(f, fp, ['path', 'size', 'sha256', 'chunkSize', 'chunks', 'urls'], ['type']);
    const path = str(fo.path, `${fp}.path`, undefined, 1024);
    const size = int(fo.size, `${fp}.size`, 0, MAX_SIZE);
    const chunkSize = int(fo.chunkSize, `${fp}.chunkSize`, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE);
    const chunks = arr(fo.chunks, `${fp}.chunks`, limits.maxChunks).map((c, j) => str(c, `${fp}.chunks[${j}]`, HEX64_RE));
    const urls = arr(fo.urls, `${fp}.urls`, 16).map((u, j) => httpUrl(u, `${fp}.urls[${j}]`));
    const file: ManifestFile = { path, size, sha256: str(fo.sha256, `${fp}.sha256`, HEX64_RE), chunkSize, chunks, urls };
    if (fo.type !== undefined) {
      if (fo.type !== 'file' && fo.type !== 'tar') throw malformed(`${fp}.type`, 'must be "file" or "tar"');
      file.type = fo.type;
    }
    const why = unsafePathReason(path);
    if (why) throw new ShoalError('inconsistent', `path ${JSON.stringify(path)} ${why}`, { path: `${fp}.path` });
    if (seen.has(path)) throw new ShoalError('inconsistent', `path ${JSON.stringify(path)} is listed twice`, { path: `${fp}.path` });
    seen.add(path);
    const want = chunkCount(size, chunkSize);
    if (chunks.length !== want) {
      throw new ShoalError('inconsistent', `a ${size}-byte file in ${chunkSize}-byte chunks has ${want} chunks, not ${chunks.length}`, { path: `${fp}.chunks` });
    }
    return file;
  });
  for (const f of files) {
    const prefix = `${f.path}/`;
    for (const g of seen) if (g.startsWith(prefix)) throw new ShoalError('inconsistent', `path ${JSON.stringify(f.path)} is both a file and a directory`, { path: `${p}.files` });
  }
  if (expires <= created) throw new ShoalError('inconsistent', 'expires must be after created', { path: `${p}.expires` });
  return {
    schema: MANIFEST_SCHEMA,
    name: str(o.name, `${p}.name`, NAME_RE),
    version: str(o.version, `${p}.version`, VERSION_RE),
    sequence: int(o.sequence, `${p}.sequence`, 0, Number.MAX_SAFE_INTEGER),
    created: o.created as string,
    expires: o.expires as string,
    files,
  };
}

export function validateChannelBody(signed: unknown): ChannelBody {
  schemaOf(signed, CHANNEL_SCHEMA);
  const p = '$.signed';
  const o = fields(signed, p, ['schema', 'channel', 'name', 'sequence', 'manifestId', 'manifestUrl', 'expires']);
  time(o.expires, `${p}.expires`);
  return {
    schema: CHANNEL_SCHEMA,
    channel: str(o.channel, `${p}.channel`, NAME_RE),
    name: str(o.name, `${p}.name`, NAME_RE),
    sequence: int(o.sequence, `${p}.sequence`, 0, Number.MAX_SAFE_INTEGER),
    manifestId: str(o.manifestId, `${p}.manifestId`, HEX64_RE),
    manifestUrl: httpUrl(o.manifestUrl, `${p}.manifestUrl`),
    expires: o.expires as string,
  };
}
