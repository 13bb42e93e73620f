/**
 * The last minutes of throughput, one bucket per second: what the dashboard's
 * chart draws the moment a page connects, instead of starting empty. Fed
 * where bytes are counted (chunks stored, bytes uploaded); buckets roll over
 * lazily on the injected clock, so there is no timer to start or stop.
 */
import type { Clock } from '../common/clock.js';

export const RATE_SERIES = ['origin', 'peer', 'upload'] as const;
export type RateSeries = (typeof RATE_SERIES)[number];

/** Bytes per second per series, oldest first; `start` is the first bucket's time (ms). */
export interface RateWindow {
  start: number;
  stepMs: number;
  origin: number[];
  peer: number[];
  upload: number[];
}

export class RateHistory {
  private readonly rings: Record<RateSeries, Float64Array>;
  /** The second (clock ms ÷ step) the newest bucket holds. */
  private head: number;

  constructor(private clock: Pick<Clock, 'now'>, readonly seconds = 600, readonly stepMs = 1000) {
    this.rings = { origin: new Float64Array(seconds), peer: new Float64Array(seconds), upload: new Float64Array(seconds) };
    this.head = Math.floor(clock.now() / stepMs);
  }

  add(series: RateSeries, bytes: number): void {
    if (!(bytes > 0)) return;
    this.roll();
    this.rings[series][this.slot(this.head)]! += bytes;
  }

  /** The ring index of second `s` (before the epoch too: a clock near zero, as in tests). */
  private slot(s: number): number {
    return ((s % this.seconds) + this.seconds) % this.seconds;
  }

  /** Zeroes the buckets between the newest one and now. */
  private roll() {
    const now = Math.floor(this.clock.now() / this.stepMs);
    if (now <= this.head) return;
    for (let s = this.head + 1; s <= Math.min(now, this.head + this.seconds); s++) for (const r of RATE_SERIES) this.rings[r][this.slot(s)] = 0;
    this.head = now;
  }

  /**
   * The last `count` complete buckets (the current second is still filling and
   * would read low), oldest first.
   */
  window(count = this.seconds - 1): RateWindow {
    this.roll();
    const n = Math.max(0, Math.min(count, this.seconds - 1));
    const first = this.head - n;
    const out: RateWindow = { start: first * this.stepMs, stepMs: this.stepMs, origin: [], peer: [], upload: [] };
    for (let s = first; s < this.head; s++) for (const r of RATE_SERIES) out[r].push(this.rings[r][this.slot(s)]! * (1000 / this.stepMs));
    return out;
  }
}
