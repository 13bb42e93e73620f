/**
 * Follows the contiguous verified prefix of a blob's data file and hashes it
 * in order, on its own thread, so the whole-blob SHA-256 is ready when the
 * last chunk lands instead of costing a second full pass afterwards.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const { file } = workerData as { file: string };
const hash = createHash('sha256');
let hashed = 0;
let target = 0;
let finishing = false;
let running = false;
const buf = Buffer.allocUnsafe(1 << 20);
const fhP = fs.open(file, 'r');

async function pump() {
  if (running) return;
  running = true;
  try {
    const fh = await fhP;
    while (hashed < target) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, target - hashed), hashed);
      if (bytesRead === 0) throw new Error(`data file ended at ${hashed}, expected ${target}`);
      hash.update(buf.subarray(0, bytesRead));
      hashed += bytesRead;
    }
    if (finishing) {
      parentPort!.postMessage({ digest: hash.digest('hex'), bytes: hashed });
      await fh.close();
    }
  } catch (e) {
    parentPort!.postMessage({ error: (e as Error).message });
  } finally {
    running = false;
  }
}

parentPort!.on('message', (m: { upto: number; finish?: boolean }) => {
  target = Math.max(target, m.upto);
  if (m.finish) finishing = true;
  if (finishing && running) return; // the running pump sees `finishing` when it drains
  void pump();
});
