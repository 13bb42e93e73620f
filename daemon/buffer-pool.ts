/**
 * A fixed set of chunk buffers, reused for every transfer: memory stays flat
 * however large the artifact, and no fresh pages are faulted in per chunk.
 */
export interface Lease {
  buf: Buffer;
  release(): void;
}

export class BufferPool {
  private free: Buffer[] = [];
  private allocated = 0;
  private waiters: Array<() => void> = [];

  constructor(private maxBuffers: number) {}

  /** A buffer of exactly `size` bytes (a view into a pooled one); waits while all are in use. */
  async acquire(size: number, signal?: AbortSignal): Promise<Lease> {
    for (;;) {
      signal?.throwIfAborted();
      const i = this.free.findIndex((b) => b.length >= size);
      let base: Buffer | undefined;
      if (i >= 0) base = this.free.splice(i, 1)[0];
      else if (this.allocated < this.maxBuffers) { this.allocated++; base = Buffer.allocUnsafeSlow(size); }
      else if (this.free.length) { this.free.shift(); base = Buffer.allocUnsafeSlow(size); } // too small: replace one
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
