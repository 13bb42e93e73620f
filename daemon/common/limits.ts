/** Rate and concurrency limits shared by the origin client and the peer server. */

/** Token bucket in bytes/second; rate 0 means unlimited. The rate can change live (SIGHUP). */
export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  constructor(private rate: number, private burstSeconds = 0.25) {
    this.tokens = this.burst();
  }

  private burst() {
    return Math.max(64 * 1024, this.rate * this.burstSeconds);
  }

  get limited(): boolean {
    return this.rate > 0;
  }

  setRate(rate: number) {
    this.rate = rate;
    this.tokens = Math.min(this.tokens, this.burst());
  }

  /** Waits until n bytes may pass. Large n is paid in instalments so the average holds. */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      // Checked each round: the limit may be lifted (SIGHUP) while we wait.
      if (this.rate <= 0) return;
      const now = performance.now();
      this.tokens = Math.min(this.burst(), this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
      if (this.tokens >= Math.min(n, this.burst())) {
        this.tokens -= n; // may go negative: the debt is waited out by later callers
        return;
      }
      const waitMs = ((Math.min(n, this.burst()) - this.tokens) / this.rate) * 1000;
      await sleep(Math.max(1, waitMs), signal);
    }
  }
}

export class Semaphore {
  private waiters: Array<() => void> = [];
  private inUse = 0;
  constructor(private max: number) {}

  get active() {
    return this.inUse;
  }

  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.inUse >= this.max) {
      await new Promise<void>((resolve, reject) => {
        const go = () => { signal?.removeEventListener('abort', abort); resolve(); };
        const abort = () => { this.waiters = this.waiters.filter((w) => w !== go); reject(signal!.reason); };
        this.waiters.push(go);
        signal?.addEventListener('abort', abort, { once: true });
      });
    }
    this.inUse++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse--;
      this.waiters.shift()?.();
    };
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(t); reject(signal!.reason); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
