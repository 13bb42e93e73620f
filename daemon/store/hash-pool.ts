/**
 * SHA-256 off the main thread: a small pool of hashing threads (hash-worker.ts).
 * Chunks received into shared memory are checked in place, without a copy,
 * and stored chunks are re-hashed from their file (first read after a
 * restart, scrub). Threads start on first use and stop when idle, so an idle
 * daemon holds none.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { sha256Hex } from '../../manifests/canonical.js';
import type { HashReply, HashRequest } from './hash-protocol.js';

/** Below this a round trip to a thread costs more than hashing in place. */
const INLINE_BYTES = 256 << 10;

interface Slot {
  worker: Worker;
  /** Bytes queued, to pick the least loaded thread. */
  load: number;
  pending: Map<number, { resolve(digest: string): void; reject(e: Error): void; bytes: number }>;
  idleTimer: NodeJS.Timeout | undefined;
}

export class HashPool {
  private slots: (Slot | undefined)[];
  private nextId = 1;

  /** Default: one thread per core beyond the first, at most two. */
  constructor(readonly threads = Math.max(1, Math.min(2, os.availableParallelism() - 1)), private idleStopMs = 10_000) {
    this.slots = new Array<Slot | undefined>(threads).fill(undefined);
  }

  /** SHA-256 (hex) of `data`: on a pool thread when it lives in shared memory, else in place. */
  digest(data: Buffer): Promise<string> {
    const inPlace = () => sha256Hex(data);
    if (!(data.buffer instanceof SharedArrayBuffer) || data.length < INLINE_BYTES) return Promise.resolve(inPlace());
    const sab = data.buffer;
    // Should a thread die mid-way, the bytes are still here: hash them in place.
    return this.call(data.length, (id) => ({ op: 'digest', id, sab, off: data.byteOffset, len: data.length })).catch(inPlace);
  }

  /** SHA-256 (hex) of bytes [pos, pos+len) of `file`, read and hashed on a pool thread. */
  digestFile(file: string, pos: number, len: number): Promise<string> {
    return this.call(len, (id) => ({ op: 'file', id, file, pos, len }));
  }

  private call(bytes: number, msg: (id: number) => HashRequest): Promise<string> {
    let k = 0;
    for (let j = 1; j < this.slots.length; j++) if ((this.slots[j]?.load ?? 0) < (this.slots[k]?.load ?? 0)) k = j;
    const slot = this.slot(k);
    const id = this.nextId++;
    slot.load += bytes;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject, bytes });
      slot.worker.postMessage(msg(id));
    });
  }

  private slot(k: number): Slot {
    const existing = this.slots[k];
    if (existing) {
      if (existing.idleTimer) { clearTimeout(existing.idleTimer); existing.idleTimer = undefined; }
      return existing;
    }
    const worker = new Worker(new URL('./hash-worker.js', import.meta.url));
    worker.unref();
    const slot: Slot = { worker, load: 0, pending: new Map(), idleTimer: undefined };
    this.slots[k] = slot;
    worker.on('message', (m: HashReply) => {
      const p = slot.pending.get(m.id);
      if (!p) return;
      slot.pending.delete(m.id);
      slot.load -= p.bytes;
      if (m.digest !== undefined) p.resolve(m.digest);
      else p.reject(new Error(m.error ?? 'hash failed'));
      this.idleCheck(k);
    });
    // A dead thread fails what it held; the next call starts a fresh one.
    const fail = (e: Error) => {
      if (this.slots[k] === slot) this.slots[k] = undefined;
      if (slot.idleTimer) clearTimeout(slot.idleTimer);
      for (const p of slot.pending.values()) p.reject(e);
      slot.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`hash thread exited (${code})`)));
    return slot;
  }

  private idleCheck(k: number) {
    const slot = this.slots[k];
    if (!slot || slot.pending.size || slot.idleTimer) return;
    slot.idleTimer = setTimeout(() => {
      if (this.slots[k] !== slot || slot.pending.size) return;
      this.slots[k] = undefined;
      void slot.worker.terminate();
    }, this.idleStopMs);
    slot.idleTimer.unref();
  }

  /** Threads running now (for tests). */
  get running(): number {
    return this.slots.filter(Boolean).length;
  }

  async stop(): Promise<void> {
    const slots = this.slots.filter((s): s is Slot => !!s);
    this.slots.fill(undefined);
    // Referenced while they end: an unreferenced worker would let the process exit mid-stop.
    await Promise.allSettled(slots.map((s) => { if (s.idleTimer) clearTimeout(s.idleTimer); s.worker.ref(); return s.worker.terminate(); }));
  }
}
