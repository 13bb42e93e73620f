import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { sha256Hex } from './canonical.js';
import { ShoalError, fromSystemError } from './errors.js';

/**
 * Key formats (see docs/formats.md):
 * - public key: one line `ed25519:<base64url of the 32 raw key bytes>`, fit for a config file;
 * - private key: PKCS#8 PEM, file mode 0600.
 * The key id is the hex SHA-256 of the 32 raw public key bytes.
 */
export const PUBLIC_KEY_PREFIX = 'ed25519:';
const PUBLIC_KEY_RE = /^ed25519:([A-Za-z0-9_-]{43})$/;

export interface PublicKey {
  keyid: string;
  text: string;
  key: KeyObject;
}

export interface SigningKey {
  keyid: string;
  privateKey: KeyObject;
  publicKey: PublicKey;
}

function rawPublic(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new ShoalError('bad-key', 'not an Ed25519 key');
  }
  return Buffer.from(jwk.x, 'base64url');
}

function toPublicKey(key: KeyObject): PublicKey {
  const raw = rawPublic(key);
  return { keyid: sha256Hex(raw), text: PUBLIC_KEY_PREFIX + raw.toString('base64url'), key };
}

/** Parses the one-line public key form. Extra whitespace and a trailing comment are allowed. */
export function parsePublicKey(text: string): PublicKey {
  const first = text.trim().split(/\s+/)[0] ?? '';
  const m = PUBLIC_KEY_RE.exec(first);
  if (!m) throw new ShoalError('bad-key', 'a public key must look like "ed25519:" followed by 43 base64url characters');
  try {
    return toPublicKey(createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: m[1]! }, format: 'jwk' }));
  } catch (e) {
    throw new ShoalError('bad-key', `invalid Ed25519 public key: ${(e as Error).message}`);
  }
}

/** A key given inline (`ed25519:…`) or as a path to a file holding that line. */
export async function loadPublicKey(spec: string): Promise<PublicKey> {
  if (spec.trim().startsWith(PUBLIC_KEY_PREFIX)) return parsePublicKey(spec);
  let text: string;
  try {
    const st = await fs.stat(spec);
    if (!st.isFile() || st.size > 4096) throw new ShoalError('bad-key', `${spec}: not a public key file`);
    text = await fs.readFile(spec, 'utf8');
  } catch (e) {
    throw fromSystemError(e, `public key ${spec}`);
  }
  return parsePublicKey(text);
}

export async function loadSigningKey(file: string): Promise<SigningKey> {
  let pem: string;
  try {
    const st = await fs.stat(file);
    if (!st.isFile() || st.size > 16384) throw new ShoalError('bad-key', `${file}: not a private key file`);
    pem = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw fromSystemError(e, `private key ${file}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (e) {
    throw new ShoalError('bad-key', `${file}: not a PEM private key (${(e as Error).message})`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new ShoalError('bad-key', `${file}: not an Ed25519 key`);
  const publicKey = toPublicKey(createPublicKey(privateKey));
  return { keyid: publicKey.keyid, privateKey, publicKey };
}

export function generateSigningKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = toPublicKey(publicKey);
  return { keyid: pub.keyid, privateKey, publicKey: pub };
}

/** Writes `shoal.key` (0600, never overwritten unless `force`) and `shoal.pub` into dir. */
export async function writeKeyPair(dir: string, key: SigningKey, opts: { name?: string; force?: boolean } = {}) {
  const base = opts.name ?? 'shoal';
  const keyFile = path.join(dir, `${base}.key`);
  const pubFile = path.join(dir, `${base}.pub`);
  const pem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const fh = await fs.open(keyFile, opts.force ? 'w' : 'wx', 0o600);
    try {
      await fh.chmod(0o600);
      await fh.writeFile(pem);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.writeFile(pubFile, `${key.publicKey.text} ${base}\n`, { mode: 0o644 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ShoalError('key-exists', `${keyFile} already exists (use --force to replace it)`);
    }
    throw fromSystemError(e, `writing key to ${dir}`);
  }
  return { keyFile, pubFile };
}

export function signBytes(key: SigningKey, data: Buffer): string {
  return sign(null, data, key.privateKey).toString('base64');
}

export function verifyBytes(key: PublicKey, data: Buffer, sigB64: string): boolean {
  const sig = Buffer.from(sigB64, 'base64');
  if (sig.length !== 64 || sig.toString('base64') !== sigB64) return false;
  try {
    return verify(null, data, key.key, sig);
  } catch {
    return false;
  }
}
