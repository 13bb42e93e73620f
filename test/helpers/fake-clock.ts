/**
 * A Clock (daemon/common/clock.ts) that moves only when told: timers fire in
 * order of their due time as `advance` passes it, so logic with timeouts is
 * tested without sleeping.
 */
import type { Clock, Timer } from '../../daemon/common/clock.js';
import { sleepOn } from '../../daemon/common/clock.js';

interface Pending extends Timer {
  due: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

export class FakeClock implements Clock {
  private t: number;
  private timers: Pending[] = [];
  private seq = 0;

  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const p: Pending = { due: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false, unref: () => p };
    this.timers.push(p);
    return p;
  }

  clearTimeout(t: Timer | undefined): void {
    if (t) (t as Pending).cancelled = true;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }

  /** Timers not yet fired or cancelled. */
  get pending(): number {
    return this.timers.filter((p) => !p.cancelled).length;
  }

  /**
   * Moves time forward by `ms`, firing due timers in order; between timers it
   * lets promise callbacks and I/O run, so code woken by one timer can set
   * the next before time moves on.
   */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      this.timers = this.timers.filter((p) => !p.cancelled);
      this.timers.sort((a, b) => a.due - b.due || a.seq - b.seq);
      const next = this.timers[0];
      if (!next || next.due > end) break;
      this.timers.shift();
      this.t = Math.max(this.t, next.due);
      next.fn();
    }
    this.t = end;
    await settle();
  }

  /** Advances in steps of `stepMs` until `p` settles (at most `maxMs` of fake time). */
  async run<T>(p: Promise<T>, stepMs = 50, maxMs = 600_000): Promise<T> {
    let done = false;
    p.then(() => { done = true; }, () => { done = true; });
    for (let spent = 0; !done && spent < maxMs; spent += stepMs) await this.advance(stepMs);
    if (!done) throw new Error(`still pending after ${maxMs} ms of fake time`);
    return p;
  }
}

/** Lets pending promise callbacks, and a round of I/O callbacks, run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
