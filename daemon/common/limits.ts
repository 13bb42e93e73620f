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

/**
 * A floor under a transfer's rate, judged on the time spent waiting for the
 * other side: time in our own limiter or on our own disk does not count.
 * `check()` at each window's end says whether the window was too slow.
 */
export class RateFloor {
  private windowStart: number;
  private bytes = 0;
  private ownMs = 0;
  private ownSince: number | undefined;

  constructor(private minBytesPerSec: number, private now: () => number) {
    this.windowStart = now();
  }

  add(n: number) {
    this.bytes += n;
  }

  /** Our side is busy (limiter, disk, consumer) from now until ownEnd. */
  ownBegin() {
    this.ownSince ??= this.now();
  }

  ownEnd() {
    if (this.ownSince === undefined) return;
    this.ownMs += this.now() - this.ownSince;
    this.ownSince = undefined;
  }

  /** True when the other side sent below the floor in the window just ended; starts the next. */
  check(): boolean {
    const now = this.now();
    const own = this.ownMs + (this.ownSince !== undefined ? now - this.ownSince : 0);
    const theirs = now - this.windowStart - own;
    // Judged only when they had most of the window: otherwise we were the slow side.
    const slow = this.minBytesPerSec > 0 && theirs * 2 >= now - this.windowStart && this.bytes < (this.minBytesPerSec * theirs) / 1000;
    this.windowStart = now;
    this.bytes = 0;
    this.ownMs = 0;
    if (this.ownSince !== undefined) this.ownSince = now;
    return slow;
  }
}

/**
 * Sets key → value as the newest entry of a map used as a bounded cache, and drops the
 * oldest entries beyond `max` (a Map iterates in insertion order).
 */
export function setNewest<K, V>(m: Map<K, V>, key: K, value: V, max: number): void {
  m.delete(key);
  m.set(key, value);
  while (m.size > max) m.delete(m.keys().next().value!);
}
