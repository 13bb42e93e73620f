/**
 * Where the bytes this daemon handed out came from, by kind and by hour, for
 * the last 31 days: what `shoal stats` reports (as Delivery Optimization does)
 * and what peers ask of each other for the site's figure. Kept in one small
 * JSON file, written temp + fsync + rename every minute and at stop.
 */
import { promises as fs } from 'node:fs';
import { writeFileAtomic } from '../../manifests/atomic-file.js';
import { KINDS, type Kind } from '../frontends/content.js';
import type { Clock } from '../common/clock.js';

export const SOURCES = ['origin', 'peer', 'local', 'unshared'] as const;
export type SavingsSource = (typeof SOURCES)[number];
/** kind → source → bytes. */
export type SavingsTotals = Record<Kind, Record<SavingsSource, number>>;

const HOUR = 3600_000;
const KEEP_HOURS = 31 * 24;
const FLUSH_MS = 60_000;

export function emptyTotals(): SavingsTotals {
  return Object.fromEntries(KINDS.map((k) => [k, Object.fromEntries(SOURCES.map((s) => [s, 0]))])) as SavingsTotals;
}

/** A totals object from outside (a peer's answer, the file): only known kinds and sources, finite non-negative numbers. */
export function parseTotals(v: unknown): SavingsTotals | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const out = emptyTotals();
  for (const k of KINDS) {
    const row = (v as Record<string, unknown>)[k];
    if (row === undefined) continue;
    if (!row || typeof row !== 'object') return undefined;
    for (const s of SOURCES) {
      const n = (row as Record<string, unknown>)[s];
      if (n === undefined) continue;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) return undefined;
      out[k][s] = n;
    }
  }
  return out;
}

export function addTotals(a: SavingsTotals, b: SavingsTotals): SavingsTotals {
  const out = emptyTotals();
  for (const k of KINDS) for (const s of SOURCES) out[k][s] = a[k][s] + b[k][s];
  return out;
}

export class SavingsLog {
  /** Hour start (ms) → totals of that hour. */
  private hours = new Map<number, SavingsTotals>();
  private timer: ReturnType<Clock['setTimeout']> | undefined;
  private dirty = false;

  constructor(private file: string, private clock: Clock) {}

  async start() {
    const text = await fs.readFile(this.file, 'utf8').catch(() => undefined);
    if (text) {
      try {
        const data = JSON.parse(text) as Record<string, unknown>;
        for (const [h, v] of Object.entries(data)) {
          const t = parseTotals(v);
          if (t && /^\d{1,15}$/.test(h)) this.hours.set(Number(h), t);
        }
      } catch { /* a torn or foreign file: start afresh */ }
    }
    this.prune();
    this.schedule();
  }

  private schedule() {
    this.timer = this.clock.setTimeout(() => { void this.flush().finally(() => this.schedule()); }, FLUSH_MS);
    this.timer.unref?.();
  }

  add(kind: Kind, source: SavingsSource, bytes: number) {
    if (!(bytes > 0)) return;
    const h = Math.floor(this.clock.now() / HOUR) * HOUR;
    let row = this.hours.get(h);
    if (!row) { row = emptyTotals(); this.hours.set(h, row); this.prune(); }
    row[kind][source] += bytes;
    this.dirty = true;
  }

  /** Totals of the hours that overlap [since, now]. */
  since(sinceMs: number): SavingsTotals {
    let out = emptyTotals();
    const from = Math.floor(sinceMs / HOUR) * HOUR;
    for (const [h, t] of this.hours) if (h >= from) out = addTotals(out, t);
    return out;
  }

  private prune() {
    const oldest = Math.floor(this.clock.now() / HOUR) * HOUR - KEEP_HOURS * HOUR;
    for (const h of this.hours.keys()) if (h < oldest) this.hours.delete(h);
  }

  async flush() {
    if (!this.dirty) return;
    this.dirty = false;
    await writeFileAtomic(this.file, JSON.stringify(Object.fromEntries(this.hours))).catch(() => { this.dirty = true; });
  }

  async stop() {
    this.clock.clearTimeout(this.timer);
    await this.flush();
  }
}
