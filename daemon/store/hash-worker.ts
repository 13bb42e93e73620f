/**
 * A hashing thread of the HashPool. It does two jobs so the daemon's main
 * thread only moves bytes:
 * - `digest`: the SHA-256 of a chunk in shared memory (the chunk check);
 * - streams: the whole-blob SHA-256, in order. Verified chunks that arrive in
 *   order are fed from memory (`feed`); when chunks land out of order the
 *   stream reads the data file up to the verified prefix (`advance`). Either
 *   way the digest is ready when the last chunk lands, with no second pass.
 * Everything here is synchronous, so each message is handled whole and a feed
 * can never interleave with a file read of the same stream.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

export type HashRequest =
  | { op: 'digest'; id: number; sab: SharedArrayBuffer; off: number; len: number }
  | { op: 'open'; sid: number; file: string }
  | { op: 'feed'; sid: number; id: number; pos: number; sab: SharedArrayBuffer; off: number; len: number }
  | { op: 'advance'; sid: number; upto: number }
  | { op: 'finish'; sid: number; id: number; size: number }
  | { op: 'close'; sid: number };

export type HashReply = { id: number; digest?: string; error?: string };

interface Stream {
  hash: Hash;
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
      reply({ id: m.id, digest: createHash('sha256').update(new Uint8Array(m.sab, m.off, m.len)).digest('hex') });
      return;
    case 'open':
      streams.set(m.sid, { hash: createHash('sha256'), file: m.file, fd: undefined, hashed: 0, error: undefined });
      return;
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
      reply(s.error ? { id: m.id, error: s.error } : s.hashed !== m.size ? { id: m.id, error: `hashed ${s.hashed} bytes, expected ${m.size}` } : { id: m.id, digest: s.hash.digest('hex') });
      close(m.sid);
      return;
    }
    case 'close':
      close(m.sid);
  }
});
