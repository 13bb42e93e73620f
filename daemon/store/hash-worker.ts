/**
 * A hashing thread of the HashPool. It does two jobs so the daemon's main
 * thread only moves bytes:
 * - `digest`: the SHA-256 of a chunk in shared memory (the chunk check);
 * - streams: the whole-blob SHA-256, in order. Verified chunks that arrive in
 *   order are fed from memory (`feed`); when chunks land out of order the
 *   stream reads the data file up to the verified prefix (`advance`). Either
 *   way the digest is ready when the last chunk lands, with no second pass.
 * With the native hasher (sha256-pair.ts), `check` does a chunk check and the
 * stream's next bytes in one pass: the chunk's digest is compared with the
 * signed one here, and the stream keeps the bytes only when they match.
 * Everything here is synchronous, so each message is handled whole and a feed
 * can never interleave with a file read of the same stream.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { sha256Hex } from '../../manifests/canonical.js';
import { newContext, sha256Pair } from './sha256-pair.js';
import { HASH_THREAD_NICE, lowerThreadPriority } from './thread-priority.js';

lowerThreadPriority(HASH_THREAD_NICE); // hashing yields to the threads that move bytes

export type HashRequest =
  | { op: 'digest'; id: number; sab: SharedArrayBuffer; off: number; len: number }
  | { op: 'open'; sid: number; file: string }
  | { op: 'feed'; sid: number; id: number; pos: number; sab: SharedArrayBuffer; off: number; len: number }
  | { op: 'check'; sid: number; id: number; pos: number; sab: SharedArrayBuffer; off: number; len: number; expect: string }
  | { op: 'advance'; sid: number; upto: number }
  | { op: 'finish'; sid: number; id: number; size: number }
  | { op: 'close'; sid: number };

/** `fed`: for `check`, whether the stream took the bytes. */
export type HashReply = { id: number; digest?: string; fed?: boolean; error?: string };

/** A whole-blob SHA-256 in progress. */
interface WholeHash {
  update(b: Uint8Array): void;
  digest(): string;
  /** The chunk digest of `b`; the stream takes `b` only if that equals `expect`. Absent without the native hasher. */
  pairIf?(b: Uint8Array, expect: string): { digest: string; fed: boolean };
}

function wholeHash(): WholeHash {
  const p = sha256Pair;
  if (!p) {
    const h = createHash('sha256');
    return { update: (b) => h.update(b), digest: () => h.digest('hex') };
  }
  const ctx = newContext(p);
  const saved = new Uint8Array(ctx.length);
  return {
    update: (b) => p.update(ctx, b),
    digest: () => p.digest(ctx).toString('hex'),
    pairIf: (b, expect) => {
      saved.set(ctx);
      const digest = p.pair(ctx, b).toString('hex');
      if (digest !== expect) ctx.set(saved); // bad bytes never reach the whole-blob hash
      return { digest, fed: digest === expect };
    },
  };
}

interface Stream {
  hash: WholeHash;
  file: string;
  fd: number | undefined;
  hashed: number;
  error: string | undefined;
}

const streams = new Map<number, Stream>();
const buf = Buffer.allocUnsafe(1 << 20);
const reply = (m: HashReply) => parentPort!.postMessage(m);

/** Hashes the data file from where the stream is up to `upto`. */
function catchUp(s: Stream, upto: number) {
  if (s.error || s.hashed >= upto) return;
  try {
    s.fd ??= openSync(s.file, 'r');
    while (s.hashed < upto) {
      const n = readSync(s.fd, buf, 0, Math.min(buf.length, upto - s.hashed), s.hashed);
      if (n === 0) throw new Error(`data file ended at ${s.hashed}, expected ${upto}`);
      s.hash.update(buf.subarray(0, n));
      s.hashed += n;
    }
  } catch (e) {
    s.error = (e as Error).message;
  }
}

function close(sid: number) {
  const s = streams.get(sid);
  streams.delete(sid);
  if (s?.fd !== undefined) closeSync(s.fd);
}

parentPort!.on('message', (m: HashRequest) => {
  switch (m.op) {
    case 'digest':
      reply({ id: m.id, digest: sha256Hex(new Uint8Array(m.sab, m.off, m.len)) });
      return;
    case 'open':
      streams.set(m.sid, { hash: wholeHash(), file: m.file, fd: undefined, hashed: 0, error: undefined });
      return;
    case 'check': {
      const s = streams.get(m.sid);
      const b = new Uint8Array(m.sab, m.off, m.len);
      if (s?.hash.pairIf && !s.error && s.hashed === m.pos) {
        const r = s.hash.pairIf(b, m.expect);
        if (r.fed) s.hashed += m.len;
        reply({ id: m.id, ...r });
      } else {
        reply({ id: m.id, digest: sha256Hex(b), fed: false }); // the stream reads these bytes from the file later
      }
      return;
    }
    case 'feed': {
      const s = streams.get(m.sid);
      // Only the bytes right after what is hashed; anything else is read from the file later.
      if (s && !s.error && s.hashed === m.pos) {
        s.hash.update(new Uint8Array(m.sab, m.off, m.len));
        s.hashed += m.len;
      }
      reply({ id: m.id });
      return;
    }
    case 'advance': {
      const s = streams.get(m.sid);
      if (s) catchUp(s, m.upto);
      return;
    }
    case 'finish': {
      const s = streams.get(m.sid);
      if (!s) return reply({ id: m.id, error: 'hash stream is closed' });
      catchUp(s, m.size);
      reply(s.error ? { id: m.id, error: s.error } : s.hashed !== m.size ? { id: m.id, error: `hashed ${s.hashed} bytes, expected ${m.size}` } : { id: m.id, digest: s.hash.digest() });
      close(m.sid);
      return;
    }
    case 'close':
      close(m.sid);
  }
});
