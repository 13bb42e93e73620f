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
 * `live` is the same check started while the chunk's bytes still arrive: it
 * hashes each piece as the downloader reports it (a shared progress counter,
 * see LiveCheck in hash-pool.ts), so the digest is ready moments after the
 * last byte instead of a whole chunk's hashing later.
 * A stream's messages run strictly in order, one at a time (a live check
 * holds the ones behind it), so a feed or a file read can never interleave
 * with another change to the same stream.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { sha256Hex } from '../../manifests/canonical.js';
import { newContext, sha256Pair } from './sha256-pair.js';
import { ABANDONED, type HashReply, type HashRequest } from './hash-protocol.js';
import { HASH_THREAD_NICE, lowerThreadPriority } from './thread-priority.js';

lowerThreadPriority(HASH_THREAD_NICE); // hashing yields to the threads that move bytes

/** How long a live check sleeps between looks when no progress is reported (a closed stream ends it). */
const LIVE_POLL_MS = 250;

/** A whole-blob SHA-256 in progress. */
interface WholeHash {
  update(b: Uint8Array): void;
  digest(): string;
  /** The chunk digest of `b`; the stream takes `b` only if that equals `expect`. Absent without the native hasher. */
  pairIf?(b: Uint8Array, expect: string): { digest: string; fed: boolean };
  /** The same check fed piece by piece: `take` for each piece, then `end`. Absent without the native hasher. */
  begin?(): { take(b: Uint8Array): void; end(expect: string): { digest: string; fed: boolean }; abandon(): void };
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
    begin: () => {
      saved.set(ctx);
      const chunk = newContext(p);
      const restore = () => ctx.set(saved);
      return {
        take: (b) => p.pairUpdate(chunk, ctx, b),
        end: (expect) => {
          const digest = p.digest(chunk).toString('hex');
          if (digest !== expect) restore(); // bad bytes never reach the whole-blob hash
          return { digest, fed: digest === expect };
        },
        abandon: restore,
      };
    },
  };
}

interface Stream {
  hash: WholeHash;
  file: string;
  fd: number | undefined;
  hashed: number;
  error: string | undefined;
  closed: boolean;
  /** The end of this stream's message chain: its messages run one after another. */
  tail: Promise<void>;
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

/**
 * A live check (see the file comment): hashes bytes [0, n) of the chunk as the
 * progress counter reaches n, pairing with the stream when the chunk is the
 * next it needs. Ends when all bytes are in, the download is abandoned, or
 * the stream closes.
 */
async function live(s: Stream | undefined, m: Extract<HashRequest, { op: 'live' }>): Promise<HashReply> {
  const progress = new Int32Array(m.progress);
  const b = new Uint8Array(m.sab, m.off, m.len);
  const run = s && !s.error && s.hashed === m.pos ? s.hash.begin?.() : undefined;
  let done = 0;
  for (;;) {
    const have = Atomics.load(progress, 0);
    if (have === ABANDONED || s?.closed) {
      run?.abandon();
      return { id: m.id, abandoned: true };
    }
    // Whole blocks while bytes arrive (both hashes then stay at a block boundary); the rest at the end.
    const upto = have >= m.len ? m.len : Math.min(m.len, have - (have % 64));
    if (run && upto > done) {
      run.take(b.subarray(done, upto));
      done = upto;
    }
    if (have >= m.len) break;
    const w = Atomics.waitAsync(progress, 0, have, LIVE_POLL_MS);
    if (w.async) await w.value;
  }
  if (!run) return { id: m.id, digest: sha256Hex(b), fed: false }; // the stream reads these bytes from the file later
  const r = run.end(m.expect);
  if (r.fed) s!.hashed += m.len;
  return { id: m.id, ...r };
}

/** One message of a stream; `live` may take a while, and the stream's later messages wait for it. */
function streamMessage(s: Stream | undefined, m: HashRequest): Promise<void> | void {
  switch (m.op) {
    case 'live':
      return live(s, m).then(reply);
    case 'check': {
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
    case 'feed':
      // Only the bytes right after what is hashed; anything else is read from the file later.
      if (s && !s.error && s.hashed === m.pos) {
        s.hash.update(new Uint8Array(m.sab, m.off, m.len));
        s.hashed += m.len;
      }
      reply({ id: m.id });
      return;
    case 'advance':
      if (s) catchUp(s, m.upto);
      return;
    case 'finish':
      if (!s || s.closed) return reply({ id: m.id, error: 'hash stream is closed' });
      catchUp(s, m.size);
      reply(s.error ? { id: m.id, error: s.error } : s.hashed !== m.size ? { id: m.id, error: `hashed ${s.hashed} bytes, expected ${m.size}` } : { id: m.id, digest: s.hash.digest() });
      close(m.sid);
      return;
    case 'close':
      close(m.sid);
  }
}

parentPort!.on('message', (m: HashRequest) => {
  if (m.op === 'digest') return reply({ id: m.id, digest: sha256Hex(new Uint8Array(m.sab, m.off, m.len)) });
  if (m.op === 'open') {
    streams.set(m.sid, { hash: wholeHash(), file: m.file, fd: undefined, hashed: 0, error: undefined, closed: false, tail: Promise.resolve() });
    return;
  }
  const s = streams.get(m.sid);
  if (!s) return void streamMessage(undefined, m);
  if (m.op === 'close') s.closed = true; // a live check waiting on this stream gives up
  const run = () => streamMessage(s, m);
  s.tail = s.tail.then(run, run);
});
