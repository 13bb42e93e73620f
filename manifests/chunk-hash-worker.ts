/**
 * Worker half of the parallel chunker: hashes fixed-size chunks out of slots of
 * a shared buffer while the main thread hashes the whole file from the same
 * slots. Two SHA-256 streams on two cores run at the speed of one.
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';

const { sab, slotSize, chunkSize } = workerData as { sab: SharedArrayBuffer; slotSize: number; chunkSize: number };
let hash: Hash = createHash('sha256');
let inChunk = 0;

parentPort!.on('message', (msg: { slot: number; len: number } | { end: true }) => {
  if ('end' in msg) {
    parentPort!.postMessage({ final: inChunk > 0 ? hash.digest('hex') : null });
    return;
  }
  const digests: string[] = [];
  let off = 0;
  const data = Buffer.from(sab, msg.slot * slotSize, msg.len);
  while (off < msg.len) {
    const take = Math.min(chunkSize - inChunk, msg.len - off);
    hash.update(data.subarray(off, off + take));
    inChunk += take;
    off += take;
    if (inChunk === chunkSize) {
      digests.push(hash.digest('hex'));
      hash = createHash('sha256');
      inChunk = 0;
    }
  }
  parentPort!.postMessage({ slot: msg.slot, digests });
});
