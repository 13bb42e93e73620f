/**
 * SHA-256 off the main thread: a small, process-wide pool of hashing threads
 * (see hash-worker.ts). Chunk checks of buffers in shared memory and the
 * whole-blob streams run there, so the thread that serves peers and the API
 * only moves bytes; on machines with more cores the two hash passes per byte
 * run in parallel with the transfer. Threads start on first use and stop when
 * idle, so an idle daemon holds none.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { sha256Hex } from '../../manifests/canonical.js';
import { ABANDONED, type HashReply, type HashRequest } from './hash-protocol.js';
import { sha256Pair } from './sha256-pair.js';

/** Below this a round trip to a thread costs more than hashing in place. */
const INLINE_BYTES = 256 << 10;
/** A live check's thread is woken after this many more bytes have arrived. */
const LIVE_STEP = 256 << 10;

interface Slot {
  worker: Worker;
  /** Bytes queued for digest, to pick the least loaded thread. */
  load: number;
  streams: number;
  pending: Map<number, { resolve(r: HashReply): void; reject(e: Error): void; bytes: number }>;
  idleTimer: NodeJS.Timeout | undefined;
}

export class HashPool {
  private slots: (Slot | undefined)[];
  private nextId = 1;
  /** Bytes whose chunk check also advanced a whole-blob hash, in one pass (native hasher). */
  pairedBytes = 0;

  /** Default: one thread per core beyond the first, at most two (one per hash pass). */
  constructor(readonly threads = Math.max(1, Math.min(2, os.availableParallelism() - 1)), private idleStopMs = 10_000) {
    this.slots = new Array(threads).fill(undefined);
  }

  /** SHA-256 (hex) of `data`: on a pool thread when it lives in shared memory, else in place. */
  digest(data: Buffer): Promise<string> {
    const inPlace = () => sha256Hex(data);
    if (!(data.buffer instanceof SharedArrayBuffer) || data.length < INLINE_BYTES) return Promise.resolve(inPlace());
    // Least loaded, counting a whole-blob stream as a steady 64 MiB of work: keep chunk
    // checks off the thread that hashes the whole blob, so the two passes run side by side.
    const k = this.leastBy((s) => (s?.load ?? 0) + (s?.streams ?? 0) * (64 << 20));
    // Should a thread die mid-way, the bytes are still here: hash them in place.
    return this.call(k, data.length, (id) => ({ op: 'digest', id, ...shared(data) })).then((r) => r.digest!, inPlace);
  }

  /** A whole-file SHA-256 that follows a growing verified prefix of `file`. */
  stream(file: string): HashStream {
    const k = this.leastBy((s) => s?.streams ?? 0);
    const slot = this.slot(k);
    slot.streams++;
    const sid = this.nextId++;
    slot.worker.postMessage({ op: 'open', sid, file } satisfies HashRequest);
    let closed = false;
    // Closed, or its thread died (the next call would start a fresh one without this stream).
    const live = () => !closed && this.slots[k] === slot;
    const close = () => {
      if (closed) return;
      closed = true;
      slot.streams--;
      if (this.slots[k] === slot) slot.worker.postMessage({ op: 'close', sid } satisfies HashRequest);
      this.idleCheck(k);
    };
    return {
      feed: async (pos, data) => {
        if (!live() || !(data.buffer instanceof SharedArrayBuffer)) return;
        await this.call(k, data.length, (id) => ({ op: 'feed', sid, id, pos, ...shared(data) }));
      },
      pairs: !!sha256Pair,
      check: async (pos, data, expect) => {
        if (!live() || !(data.buffer instanceof SharedArrayBuffer)) return { digest: await this.digest(data), fed: false };
        const r = await this.call(k, data.length, (id) => ({ op: 'check', sid, id, pos, expect, ...shared(data) }));
        if (r.fed) this.pairedBytes += data.length;
        return { digest: r.digest!, fed: !!r.fed };
      },
      live: (pos, data, expect) => {
        if (!live() || !sha256Pair || !(data.buffer instanceof SharedArrayBuffer)) return undefined;
        const progress = new Int32Array(new SharedArrayBuffer(4));
        let told = 0;
        const result = this.call(k, data.length, (id) => ({ op: 'live', sid, id, pos, expect, progress: progress.buffer as SharedArrayBuffer, ...shared(data) }))
          .then((r) => {
            if (r.fed) this.pairedBytes += data.length;
            return { digest: r.digest, fed: !!r.fed };
          });
        return {
          result,
          progress: (n) => {
            Atomics.store(progress, 0, n);
            // Wake the thread once per LIVE_STEP (and at the end), not for every socket read.
            if (n - told >= LIVE_STEP || n >= data.length) { told = n; Atomics.notify(progress, 0); }
          },
          abandon: () => {
            Atomics.store(progress, 0, ABANDONED);
            Atomics.notify(progress, 0);
          },
        };
      },
      advance: (upto) => { if (live()) slot.worker.postMessage({ op: 'advance', sid, upto } satisfies HashRequest); },
      finish: async (size) => {
        if (!live()) throw new Error('hash stream is closed');
        try {
          return (await this.call(k, 0, (id) => ({ op: 'finish', sid, id, size }))).digest!;
        } finally {
          close();
        }
      },
      close,
    };
  }

  /** The index of the slot (running or not) with the lowest cost. */
  private leastBy(cost: (s: Slot | undefined) => number): number {
    let best = 0;
    for (let k = 1; k < this.slots.length; k++) if (cost(this.slots[k]) < cost(this.slots[best])) best = k;
    return best;
  }

  private call(k: number, bytes: number, msg: (id: number) => HashRequest): Promise<HashReply> {
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
    const slot: Slot = { worker, load: 0, streams: 0, pending: new Map(), idleTimer: undefined };
    this.slots[k] = slot;
    worker.on('message', (m: HashReply) => {
      const p = slot.pending.get(m.id);
      if (!p) return;
      slot.pending.delete(m.id);
      slot.load -= p.bytes;
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m);
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
    if (!slot || slot.pending.size || slot.streams || slot.idleTimer) return;
    slot.idleTimer = setTimeout(() => {
      if (this.slots[k] !== slot || slot.pending.size || slot.streams) return;
      this.slots[k] = undefined;
      void slot.worker.terminate();
    }, this.idleStopMs);
    slot.idleTimer.unref();
  }

  /** Threads running now (for tests and metrics). */
  get running(): number {
    return this.slots.filter(Boolean).length;
  }
}

function shared(data: Buffer) {
  return { sab: data.buffer as SharedArrayBuffer, off: data.byteOffset, len: data.length };
}

export interface HashStream {
  /**
   * Verified bytes at `pos` in shared memory: hashed in place if they are the
   * next the stream needs (else ignored; `advance` reads them from the file).
   * Resolves when `data` may be reused.
   */
  feed(pos: number, data: Buffer): Promise<void>;
  /** True when `check` verifies and feeds in one pass (the native hasher is loaded). */
  readonly pairs: boolean;
  /**
   * The chunk check of `data` (at `pos`) and, if its digest equals `expect`
   * and these are the next bytes the stream needs, the stream takes them in
   * the same pass (`fed`). Resolves when `data` may be reused.
   */
  check(pos: number, data: Buffer, expect: string): Promise<{ digest: string; fed: boolean }>;
  /**
   * `check`, started before `data` is filled: the thread hashes bytes [0, n)
   * once `progress(n)` says they are in, so the digest is ready soon after the
   * last one. The caller must end it with progress(data.length) or abandon().
   * Undefined without the native hasher or shared memory (use `check`).
   */
  live(pos: number, data: Buffer, expect: string): LiveCheck | undefined;
  /** Bytes [0, upto) of the file are written and verified: hash on up to there. */
  advance(upto: number): void;
  /** The SHA-256 (hex) of the first `size` bytes, once they are hashed. */
  finish(size: number): Promise<string>;
  close(): void;
}

export interface LiveCheck {
  /** Bytes [0, n) of the chunk are in its buffer. */
  progress(n: number): void;
  /**
   * The download failed: the check ends without a digest, and the stream does
   * not keep any of its bytes. The buffer may be reused at once: the thread
   * reads it only for this check's own digest, which is thrown away.
   */
  abandon(): void;
  /** The chunk's digest, and whether the stream took its bytes; no digest if abandoned. */
  result: Promise<{ digest: string | undefined; fed: boolean }>;
}

/** The pool every blob of this process uses. */
export const hashPool = new HashPool();
