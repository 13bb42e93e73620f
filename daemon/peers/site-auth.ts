/**
 * Site isolation: with a site secret, every peer request carries
 *   x-shoal-auth: v1 <peerId> <unix ms> <nonce> <hmac>
 * where hmac = HMAC-SHA256(key, method \n path \n ms \n nonce \n peerId). The
 * server accepts a timestamp within ±30 s and each (peer, nonce) once, so a
 * captured request cannot be replayed. The secret's fingerprint goes in mDNS
 * TXT records so daemons of two sites on one LAN ignore each other.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ShoalError } from '../errors.js';

export const AUTH_HEADER = 'x-shoal-auth';
const WINDOW_MS = 30_000;
const MAX_REMEMBERED = 100_000;

export function siteFingerprint(secret: string): string {
  return createHash('sha256').update(`shoal-site-fingerprint\0${secret}`).digest('hex').slice(0, 16);
}

export class SiteAuth {
  private key: Buffer;
  private seen = new Map<string, number>();
  readonly fingerprint: string;

  constructor(secret: string, private selfId: string, private now: () => number = Date.now) {
    this.key = createHash('sha256').update(`shoal-site-key\0${secret}`).digest();
    this.fingerprint = siteFingerprint(secret);
  }

  private mac(method: string, path: string, ts: string, nonce: string, peerId: string): Buffer {
    return createHmac('sha256', this.key).update(`${method}\n${path}\n${ts}\n${nonce}\n${peerId}`).digest();
  }

  /** Headers for an outgoing request. */
  headers(method: string, path: string): Record<string, string> {
    const ts = String(this.now());
    const nonce = randomBytes(12).toString('base64url');
    return { [AUTH_HEADER]: `v1 ${this.selfId} ${ts} ${nonce} ${this.mac(method, path, ts, nonce, this.selfId).toString('base64url')}` };
  }

  /** Checks an incoming request; throws `unauthorized` (401) otherwise. Returns the caller's peer id. */
  verify(req: IncomingMessage): string {
    const h = req.headers[AUTH_HEADER];
    const parts = typeof h === 'string' ? h.split(' ') : [];
    const fail = (why: string) => new ShoalError('unauthorized', `peer authentication failed: ${why}`);
    if (parts.length !== 5 || parts[0] !== 'v1') throw fail('missing or malformed x-shoal-auth header');
    const [, peerId, ts, nonce, mac] = parts as [string, string, string, string, string];
    if (!/^[A-Za-z0-9_-]{8,64}$/.test(peerId) || !/^\d{1,16}$/.test(ts) || !/^[A-Za-z0-9_-]{8,64}$/.test(nonce)) throw fail('malformed fields');
    const t = Number(ts);
    const now = this.now();
    if (Math.abs(now - t) > WINDOW_MS) throw fail('timestamp outside the accepted window');
    const want = this.mac(req.method ?? 'GET', req.url ?? '/', ts, nonce, peerId);
    const got = Buffer.from(mac, 'base64url');
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw fail('bad signature');
    const key = `${peerId} ${nonce}`;
    if (this.seen.has(key)) throw fail('replayed request');
    this.remember(key, t, now);
    return peerId;
  }

  private remember(key: string, t: number, now: number) {
    this.seen.set(key, t);
    if (this.seen.size > MAX_REMEMBERED) {
      // Forget what left the window; a flood beyond that drops the oldest (still bounded).
      for (const [k, v] of this.seen) if (Math.abs(now - v) > WINDOW_MS || this.seen.size > MAX_REMEMBERED) this.seen.delete(k);
    }
  }
}
