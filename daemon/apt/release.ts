/**
 * An apt repository's Release: its OpenPGP signature checked by gpgv (what apt
 * itself runs) against the host's keyrings, then the index hashes read from
 * its SHA256 field. Only a Release that passes may vouch for anything shared.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ShoalError } from '../errors.js';

/** Larger Release files than this are refused (Debian's main one is ~150 KiB). */
export const MAX_RELEASE_BYTES = 16 << 20;
const MAX_ENTRIES = 200_000;
const GPGV_TIMEOUT_MS = 10_000;

export interface ReleaseEntry {
  sha256: string;
  size: number;
}

export interface Release {
  /** Primary-key fingerprint of the signature that verified. */
  signedBy: string;
  date?: Date;
  validUntil?: Date;
  /** `Acquire-By-Hash: yes`: indexes may be fetched as by-hash/SHA256/<hash>. */
  byHash: boolean;
  /** Index path (relative to the Release's directory) → its SHA-256 and size. */
  files: Map<string, ReleaseEntry>;
}

/**
 * Checks a signed Release — `InRelease` (clearsigned), or `Release` with its
 * detached `Release.gpg` — against the given keyring files (binary or
 * ASCII-armoured, as apt accepts in Signed-By and trusted.gpg.d), and returns
 * the parsed Release. Throws bad-signature, unknown-key, malformed or too-large.
 */
export async function verifyRelease(signed: { inRelease: Buffer } | { release: Buffer; signature: Buffer }, keyrings: string[]): Promise<Release> {
  const body = 'inRelease' in signed ? signed.inRelease : signed.release;
  if (body.length > MAX_RELEASE_BYTES) throw new ShoalError('too-large', `Release is ${body.length} bytes, more than ${MAX_RELEASE_BYTES}`);
  if (!keyrings.length) throw new ShoalError('unknown-key', 'no keyring to check the Release against');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'shoal-gpgv-'));
  try {
    const rings: string[] = [];
    for (const [i, k] of keyrings.entries()) rings.push(await binaryKeyring(k, path.join(dir, `ring${i}.gpg`)));
    const args = ['--homedir', dir, '--status-fd', '1', ...rings.flatMap((r) => ['--keyring', r])];
    let text: Buffer;
    let signedBy: string;
    if ('inRelease' in signed) {
      await fs.writeFile(path.join(dir, 'InRelease'), signed.inRelease);
      // The text gpgv writes out is the signed part only: nothing outside the signature is read.
      signedBy = await gpgv([...args, '--output', path.join(dir, 'out'), path.join(dir, 'InRelease')]);
      text = await fs.readFile(path.join(dir, 'out'));
    } else {
      await fs.writeFile(path.join(dir, 'Release'), signed.release);
      await fs.writeFile(path.join(dir, 'Release.gpg'), signed.signature);
      signedBy = await gpgv([...args, path.join(dir, 'Release.gpg'), path.join(dir, 'Release')]);
      text = signed.release;
    }
    return { ...parseRelease(text.toString('utf8')), signedBy };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Runs gpgv; resolves with the signer's primary-key fingerprint only on a good, valid signature. */
function gpgv(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('gpgv', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let status = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { if (status.length < 1 << 16) status += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { if (stderr.length < 1 << 14) stderr += d.toString(); });
    const timer = setTimeout(() => p.kill('SIGKILL'), GPGV_TIMEOUT_MS);
    p.on('error', (e) => { clearTimeout(timer); reject(new ShoalError('internal', `gpgv cannot be run: ${e.message}`)); });
    p.on('close', (code) => {
      clearTimeout(timer);
      const lines = status.split('\n');
      const valid = lines.find((l) => l.startsWith('[GNUPG:] VALIDSIG '));
      if (code === 0 && valid && !lines.some((l) => /^\[GNUPG:\] (BADSIG|ERRSIG|EXPKEYSIG|REVKEYSIG) /.test(l))) {
        const f = valid.trim().split(' ');
        return resolve(f[f.length - 1] ?? '');
      }
      if (lines.some((l) => l.startsWith('[GNUPG:] NO_PUBKEY ') || l.startsWith('[GNUPG:] ERRSIG '))) return reject(new ShoalError('unknown-key', 'the Release is signed by a key in none of its keyrings'));
      if (lines.some((l) => l.startsWith('[GNUPG:] BADSIG '))) return reject(new ShoalError('bad-signature', 'the Release signature does not verify: it was changed after signing'));
      reject(new ShoalError('bad-signature', `the Release signature is not valid: ${stderr.split('\n').find((l) => l.trim()) ?? `gpgv exit ${code}`}`));
    });
  });
}

/** An ASCII-armoured keyring is dearmoured into `out` (gpgv reads binary keyrings only). */
async function binaryKeyring(file: string, out: string): Promise<string> {
  const raw = await fs.readFile(file).catch((e: NodeJS.ErrnoException) => { throw new ShoalError('unknown-key', `keyring ${file}: ${e.code === 'ENOENT' ? 'not found' : e.message}`); });
  const text = raw.subarray(0, 64).toString('latin1');
  if (!text.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) return file;
  const blocks = raw.toString('latin1').split('-----BEGIN PGP PUBLIC KEY BLOCK-----').slice(1);
  const parts = blocks.map((b) => {
    const inner = b.split('-----END PGP PUBLIC KEY BLOCK-----')[0] ?? '';
    // Armour headers end at the first empty line; the "=" line is the CRC-24.
    const lines = inner.split(/\r?\n/);
    const blank = lines.findIndex((l, i) => i > 0 && l.trim() === '');
    return Buffer.from(lines.slice(blank + 1).filter((l) => !l.startsWith('=')).join(''), 'base64');
  });
  await fs.writeFile(out, Buffer.concat(parts));
  return out;
}

/** The fields of a (verified) Release text that shoal needs. Throws malformed on anything it cannot read. */
export function parseRelease(text: string): Omit<Release, 'signedBy'> {
  const files = new Map<string, ReleaseEntry>();
  let date: Date | undefined;
  let validUntil: Date | undefined;
  let byHash = false;
  let field = '';
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (field !== 'SHA256') continue;
      const m = /^\s+([0-9a-f]{64})\s+(\d{1,15})\s+(\S+)\s*$/.exec(line);
      if (!m) throw new ShoalError('malformed', `Release: unreadable SHA256 line: ${line.slice(0, 120)}`);
      if (!safeIndexPath(m[3]!)) throw new ShoalError('malformed', `Release: unsafe path ${m[3]!.slice(0, 120)}`);
      if (files.size >= MAX_ENTRIES) throw new ShoalError('too-large', `Release lists more than ${MAX_ENTRIES} files`);
      files.set(m[3]!, { sha256: m[1]!, size: Number(m[2]) });
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new ShoalError('malformed', `Release: unreadable line: ${line.slice(0, 120)}`);
    field = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    if (field === 'Date') date = releaseDate(value, 'Date');
    else if (field === 'Valid-Until') validUntil = releaseDate(value, 'Valid-Until');
    else if (field === 'Acquire-By-Hash') byHash = value.toLowerCase() === 'yes';
  }
  if (!files.size) throw new ShoalError('malformed', 'Release lists no SHA256 hashes');
  return { files, byHash, ...(date ? { date } : {}), ...(validUntil ? { validUntil } : {}) };
}

function releaseDate(v: string, field: string): Date {
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new ShoalError('malformed', `Release: ${field} is not a date: ${v.slice(0, 64)}`);
  return d;
}

/** A path inside the release's directory: no "..", not absolute, printable. */
export function safeIndexPath(p: string): boolean {
  return p.length <= 1024 && !p.startsWith('/') && !p.split('/').some((s) => s === '..' || s === '' || s === '.') && /^[\x21-\x7e]+$/.test(p);
}
