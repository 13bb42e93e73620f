/**
 * A hashing thread of the HashPool: SHA-256 of a received chunk in shared
 * memory, or of a stored chunk read back from its data file, so the thread
 * that moves bytes never waits for a hash.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { HashReply, HashRequest } from './hash-protocol.js';

const buf = Buffer.allocUnsafe(1 << 20);

function hashFile(file: string, pos: number, len: number): string {
  const h = createHash('sha256');
  const fd = openSync(file, 'r');
  try {
    for (let done = 0; done < len;) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, len - done), pos + done);
      if (n === 0) throw new Error(`${file} ended at ${pos + done}, expected ${pos + len}`);
      h.update(buf.subarray(0, n));
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

parentPort!.on('message', (m: HashRequest) => {
  let reply: HashReply;
  try {
    reply = { id: m.id, digest: m.op === 'digest' ? createHash('sha256').update(new Uint8Array(m.sab, m.off, m.len)).digest('hex') : hashFile(m.file, m.pos, m.len) };
  } catch (e) {
    reply = { id: m.id, error: (e as Error).message };
  }
  parentPort!.postMessage(reply);
});
