/**
 * A fixed set of chunk buffers, reused for every transfer: memory stays flat
 * however large the artifact, and no fresh pages are faulted in per chunk.
 * They live in shared memory so the hash pool's threads can check a chunk in
 * place, without a copy.
 */
const sharedBuffer = (size: number) => Buffer.from(new SharedArrayBuffer(size));

export interface Lease {
  buf: Buffer;
  release(): void;
}

export class BufferPool {
  private free: Buffer[] = [];
  private allocated = 0;
  private waiters: Array<() => void> = [];

  constructor(private maxBuffers: number) {}

  /** How many buffers the pool holds at most. */
  get size(): number {
    return this.maxBuffers;
  }

  /** A buffer of exactly `size` bytes (a view into a pooled one); waits while all are in use. */
  async acquire(size: number, signal?: AbortSignal): Promise<Lease> {
    for (;;) {
      signal?.throwIfAborted();
      const i = this.free.findIndex((b) => b.length >= size);
      let base: Buffer | undefined;
      if (i >= 0) base = this.free.splice(i, 1)[0];
      else if (this.allocated < this.maxBuffers) { this.allocated++; base = sharedBuffer(size); }
      else if (this.free.length) { this.free.shift(); base = sharedBuffer(size); } // too small: replace one
      if (base) {
        let done = false;
        return {
          buf: base.subarray(0, size),
          release: () => {
            if (done) return;
            done = true;
            this.free.push(base!);
            this.waiters.shift()?.();
          },
        };
      }
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal!.reason);
        this.waiters.push(() => { signal?.removeEventListener('abort', onAbort); resolve(); });
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  get inUse() {
    return this.allocated - this.free.length;
  }
}

/**
 * Copies `src` into `target` at `offset`. Buffer#copy into shared memory goes
 * through V8's word-at-a-time relaxed-atomic copy; Buffer#fill with a buffer of
 * exactly the span's length is one memcpy (docs/benchmarks.md).
 */
export function copyInto(target: Buffer, src: Buffer, offset: number): void {
  if (src.length) target.fill(src, offset, offset + src.length);
}
