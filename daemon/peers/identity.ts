/**
 * A daemon's identity: an Ed25519 key pair kept in its state directory. Its
 * peer id is derived from the public key, so no host can choose an id (or
 * its HRW rank) without generating and holding the key, and none can speak
 * as another: `/v1/info` answers carry a signature over the asker's random
 * challenge, and lease requests a signature over the request itself. Bans and
 * scores attach to the proven id.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../manifests/atomic-file.js';
import { sha256Hex } from '../../manifests/canonical.js';
import { generateSigningKey, loadSigningKey, parsePublicKey, signBytes, verifyBytes, type SigningKey } from '../../manifests/keys.js';
import { ShoalError } from '../errors.js';
import { setNewest } from '../common/limits.js';

export const IDENTITY_FILE = 'identity.key';
/** How far a signed request's clock may be from ours. */
const WINDOW_MS = 60_000;
const MAX_REMEMBERED = 100_000;
/** Parsed public keys kept (a site's members and then some; junk keys only push out the oldest). */
const MAX_KEYS = 1024;

/** The peer id of a public key (`ed25519:…`): 16 bytes of its SHA-256, base64url. */
export function peerIdOf(publicKeyText: string): string {
  return idOfKey(parsePublicKey(publicKeyText));
}

function idOfKey(pub: { keyid: string }): string {
  return Buffer.from(pub.keyid, 'hex').subarray(0, 16).toString('base64url');
}

const infoProofBytes = (challenge: string, site: string, id: string) => Buffer.from(`shoal-info-v1\n${challenge}\n${site}\n${id}`);
const requestBytes = (method: string, p: string, ts: string, nonce: string, body: Buffer) => Buffer.from(`shoal-request-v1\n${method}\n${p}\n${ts}\n${nonce}\n${sha256Hex(body)}`);

export class Identity {
  readonly id: string;
  readonly publicKey: string;
  private seen = new Map<string, number>();
  private keys = new Map<string, ReturnType<typeof parsePublicKey>>();

  private constructor(private key: SigningKey, private now: () => number) {
    this.publicKey = key.publicKey.text;
    this.id = peerIdOf(this.publicKey);
  }

  /** Loads the key pair from `dir`, or makes one (0600, written atomically) on first start. */
  static async open(dir: string, now: () => number = Date.now): Promise<Identity> {
    const file = path.join(dir, IDENTITY_FILE);
    const exists = await fs.stat(file).then(() => true, () => false);
    if (exists) return new Identity(await loadSigningKey(file), now);
    const key = generateSigningKey();
    await writeFileAtomic(file, key.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, 0o600);
    return new Identity(key, now);
  }

  /** A fresh identity in memory (tests). */
  static generate(now: () => number = Date.now): Identity {
    return new Identity(generateSigningKey(), now);
  }

  /** The proof for a `/v1/info` answer: our signature over the asker's challenge. */
  infoProof(challenge: string, site: string): string {
    return signBytes(this.key, infoProofBytes(challenge, site, this.id));
  }

  /** The header value that proves a request comes from us: `pubkey ts nonce signature`. */
  requestHeader(method: string, p: string, body: Buffer): string {
    const ts = String(this.now());
    const nonce = randomBytes(12).toString('base64url');
    return `${this.publicKey} ${ts} ${nonce} ${signBytes(this.key, requestBytes(method, p, ts, nonce, body))}`;
  }

  /** Checks a request's proof; returns the proven peer id, or throws `unauthorized`. Each proof is accepted once. */
  verifyRequest(header: string | undefined, method: string, p: string, body: Buffer): string {
    const parts = (header ?? '').split(' ');
    const fail = (why: string) => new ShoalError('unauthorized', `peer identity not proven: ${why}`);
    if (parts.length !== 4) throw fail(`missing or malformed ${PEER_HEADER} header`);
    const [pub, ts, nonce, sig] = parts as [string, string, string, string];
    if (!/^\d{1,16}$/.test(ts) || !/^[A-Za-z0-9_-]{8,64}$/.test(nonce)) throw fail('malformed fields');
    // A site has few members, each signing many requests: its key is parsed once (about as dear as the verify).
    let key = this.keys.get(pub);
    if (!key) {
      try { key = parsePublicKey(pub); } catch { throw fail('not an Ed25519 public key'); }
      setNewest(this.keys, pub, key, MAX_KEYS);
    }
    const now = this.now();
    if (Math.abs(now - Number(ts)) > WINDOW_MS) throw fail('timestamp outside the accepted window');
    if (!verifyBytes(key, requestBytes(method, p, ts, nonce, body), sig)) throw fail('bad signature');
    const id = idOfKey(key);
    const k = `${id} ${nonce}`;
    if (this.seen.has(k)) throw fail('replayed request');
    if (this.seen.size >= MAX_REMEMBERED) for (const [key2, t] of this.seen) if (now - t > WINDOW_MS || this.seen.size >= MAX_REMEMBERED) this.seen.delete(key2);
    this.seen.set(k, Number(ts));
    return id;
  }
}

/** Checks an info answer's proof against the challenge we sent; true when `id` holds `publicKey`. */
export function verifyInfoProof(info: { peerId: string; publicKey?: string; proof?: string }, challenge: string, site: string): boolean {
  if (typeof info.publicKey !== 'string' || typeof info.proof !== 'string') return false;
  try {
    if (peerIdOf(info.publicKey) !== info.peerId) return false;
    return verifyBytes(parsePublicKey(info.publicKey), infoProofBytes(challenge, site, info.peerId), info.proof);
  } catch {
    return false;
  }
}

export const PEER_HEADER = 'x-shoal-peer';
