import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ShoalError, fromSystemError } from './errors.js';

export const MIN_CHUNK_SIZE = 1 << 20;
export const MAX_CHUNK_SIZE = 64 << 20;
export const DEFAULT_CHUNK_SIZE = 4 << 20;

export interface FileDigest {
  size: number;
  sha256: string;
  chunks: string[];
}

export function chunkCount(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}

export function checkChunkSize(chunkSize: number): void {
  if (!Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new ShoalError('usage', `chunk size must be between 1 MiB and 64 MiB, got ${chunkSize} bytes`);
  }
}

const SLOT_SIZE = 8 << 20;
const SLOTS = 3;
const PARALLEL_THRESHOLD = 16 << 20;

/**
 * One pass over a file of any size, constant memory (3 slots of 8 MiB: larger slots mean fewer thread hand-offs):
 * every chunk's SHA-256 and the whole file's SHA-256. Files above
 * `parallelThreshold` hash chunks on a worker thread so both digests run at
 * full speed; small files skip the worker's start-up cost.
 */
export async function digestFile(
  file: string,
  chunkSize = DEFAULT_CHUNK_SIZE,
  opts: { parallelThreshold?: number; signal?: AbortSignal } = {},
): Promise<FileDigest> {
  checkChunkSize(chunkSize);
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (e) {
    throw fromSystemError(e, `reading ${file}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ShoalError('usage', `${file} is not a regular file`);
    const threshold = opts.parallelThreshold ?? PARALLEL_THRESHOLD;
    const d = st.size >= threshold ? await digestParallel(fh, chunkSize, opts.signal) : await digestSerial(fh, chunkSize, opts.signal);
    if (d.size !== st.size) throw new ShoalError('io', `${file} changed size while it was being read`);
    return d;
  } catch (e) {
    throw fromSystemError(e, `reading ${file}`);
  } finally {
    await fh.close();
  }
}

async function digestSerial(fh: fs.FileHandle, chunkSize: number, signal?: AbortSignal): Promise<FileDigest> {
  const whole = createHash('sha256');
  const chunks: string[] = [];
  const buf = Buffer.allocUnsafe(Math.min(SLOT_SIZE, chunkSize));
  let chunk = createHash('sha256');
  let inChunk = 0;
  let size = 0;
  for (;;) {
    signal?.throwIfAborted();
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, chunkSize - inChunk), size);
    if (bytesRead === 0) break;
    const data = buf.subarray(0, bytesRead);
    whole.update(data);
    chunk.update(data);
    size += bytesRead;
    inChunk += bytesRead;
    if (inChunk === chunkSize) {
      chunks.push(chunk.digest('hex'));
      chunk = createHash('sha256');
      inChunk = 0;
    }
  }
  if (inChunk > 0) chunks.push(chunk.digest('hex'));
  return { size, sha256: whole.digest('hex'), chunks };
}

async function digestParallel(fh: fs.FileHandle, chunkSize: number, signal?: AbortSignal): Promise<FileDigest> {
  const sab = new SharedArrayBuffer(SLOT_SIZE * SLOTS);
  const worker = new Worker(new URL('./chunk-hash-worker.js', import.meta.url), {
    workerData: { sab, slotSize: SLOT_SIZE, chunkSize },
  });
  const chunks: string[] = [];
  // One waiter per slot: resolved when the worker has finished hashing it.
  const slotFree: Array<Promise<void>> = Array.from({ length: SLOTS }, () => Promise.resolve());
  const releasers = new Map<number, () => void>();
  let finalResolve: (d: string | null) => void = () => {};
  let failed: ((e: Error) => void) | undefined;
  const failure = new Promise<never>((_, reject) => { failed = reject; });
  failure.catch(() => {});
  worker.on('message', (m: { slot: number; digests: string[] } | { final: string | null }) => {
    if ('final' in m) return finalResolve(m.final);
    chunks.push(...m.digests);
    releasers.get(m.slot)?.();
  });
  worker.on('error', (e) => failed?.(e));
  const view = (i: number, n: number) => Buffer.from(sab, i * SLOT_SIZE, n);
  const readInto = async (i: number, pos: number) => (await fh.read(view(i, SLOT_SIZE), 0, SLOT_SIZE, pos)).bytesRead;
  try {
    const whole = createHash('sha256');
    let size = 0;
    let reading = readInto(0, 0);
    for (let k = 0; ; k++) {
      signal?.throwIfAborted();
      const i = k % SLOTS;
      const n = await Promise.race([reading, failure]);
      if (n === 0) break;
      size += n;
      slotFree[i] = new Promise<void>((resolve) => releasers.set(i, resolve));
      worker.postMessage({ slot: i, len: n });
      const next = (k + 1) % SLOTS;
      await Promise.race([slotFree[next], failure]);
      reading = readInto(next, size);
      whole.update(view(i, n));
    }
    const final = new Promise<string | null>((resolve) => { finalResolve = resolve; });
    worker.postMessage({ end: true });
    const last = await Promise.race([final, failure]);
    if (last) chunks.push(last);
    return { size, sha256: whole.digest('hex'), chunks };
  } finally {
    await worker.terminate();
  }
}
