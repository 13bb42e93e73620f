/**
 * Streaming reader of an apt `Packages` index: one stanza at a time, in
 * bounded memory however large the index (Debian's main amd64 one is ~50 MB
 * uncompressed), decompressing .gz with zlib and .xz with the system's xz.
 * Yields what the proxy needs to vouch for a .deb: its path, size, SHA-256.
 */
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { ShoalError } from '../errors.js';
import { safeIndexPath } from './release.js';

export interface PackageEntry {
  package: string;
  version: string;
  architecture: string;
  /** Path relative to the repository root, as in the stanza's `Filename`. */
  filename: string;
  size: number;
  sha256: string;
}

/** Longest line read (descriptions wrap well below this); longer is malformed. */
const MAX_LINE = 64 * 1024;
/** Most decompressed bytes read from one index (a decompression bomb stops here). */
export const MAX_INDEX_BYTES = 1 << 30;

/** The decompressed bytes of an index, by the name's suffix (.gz, .xz, or none). */
export function decompressed(name: string, body: Readable): Readable {
  if (name.endsWith('.gz')) return body.pipe(createGunzip());
  if (name.endsWith('.xz')) {
    const xz = spawn('xz', ['-dc'], { stdio: ['pipe', 'pipe', 'ignore'] });
    body.pipe(xz.stdin);
    xz.stdin.on('error', () => {});
    body.on('error', (e) => xz.stdout.destroy(e));
    xz.on('error', (e) => xz.stdout.destroy(new ShoalError('internal', `xz cannot be run: ${e.message}`)));
    xz.on('close', (code) => { if (code) xz.stdout.destroy(new ShoalError('malformed', `${name}: not a valid xz stream`)); });
    return xz.stdout;
  }
  if (/\.(bz2|lzma|zst|lz4)$/.test(name)) throw new ShoalError('malformed', `${name}: this compression is not read (use .gz, .xz or plain)`);
  return body;
}

/**
 * Every package stanza with a Filename, Size and SHA256, in order. Stanzas
 * without them (a Sources index, or a stanza missing a hash) are skipped;
 * a line past MAX_LINE, a bad hash or size, or an unsafe path is malformed.
 */
export async function* readPackages(bytes: Readable, limits: { maxBytes?: number } = {}): AsyncGenerator<PackageEntry> {
  const maxBytes = limits.maxBytes ?? MAX_INDEX_BYTES;
  let total = 0;
  let carry: Buffer = Buffer.alloc(0);
  let stanza: Record<string, string> = {};
  let lineNo = 0;
  const finish = (): PackageEntry | undefined => {
    const s = stanza;
    stanza = {};
    if (!s.Filename || s.SHA256 === undefined || s.Size === undefined) return undefined;
    const where = `stanza of ${String(s.Package).slice(0, 80)} before line ${lineNo}`;
    if (!/^[0-9a-f]{64}$/.test(s.SHA256)) throw new ShoalError('malformed', `Packages: SHA256 is not 64 hex characters (${where})`);
    if (!/^\d{1,15}$/.test(s.Size)) throw new ShoalError('malformed', `Packages: Size is not a number (${where})`);
    if (!safeIndexPath(s.Filename)) throw new ShoalError('malformed', `Packages: unsafe Filename ${s.Filename.slice(0, 120)} (${where})`);
    return { package: s.Package ?? '', version: s.Version ?? '', architecture: s.Architecture ?? '', filename: s.Filename, size: Number(s.Size), sha256: s.SHA256 };
  };
  const line = (l: string): PackageEntry | undefined => {
    lineNo++;
    if (l === '' || l === '\r') return finish();
    if (l.startsWith(' ') || l.startsWith('\t')) return undefined; // a continuation (Description)
    const colon = l.indexOf(':');
    if (colon <= 0) throw new ShoalError('malformed', `Packages: line ${lineNo} is not "Field: value"`);
    const field = l.slice(0, colon);
    if (field === 'Package' || field === 'Version' || field === 'Architecture' || field === 'Filename' || field === 'Size' || field === 'SHA256') stanza[field] = l.slice(colon + 1).trim();
    return undefined;
  };
  for await (const chunk of bytes as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > maxBytes) {
      bytes.destroy();
      throw new ShoalError('too-large', `Packages index larger than ${maxBytes} bytes`);
    }
    let buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(0x0a, start); nl >= 0; nl = buf.indexOf(0x0a, start)) {
      const e = line(buf.toString('utf8', start, nl));
      if (e) yield e;
      start = nl + 1;
    }
    buf = buf.subarray(start);
    if (buf.length > MAX_LINE) throw new ShoalError('malformed', `Packages: line ${lineNo + 1} is longer than ${MAX_LINE} bytes`);
    carry = Buffer.from(buf); // a copy: the stream's chunk is not kept alive by a small tail
  }
  if (carry.length) {
    const e = line(carry.toString('utf8'));
    if (e) yield e;
  }
  const last = finish();
  if (last) yield last;
}
