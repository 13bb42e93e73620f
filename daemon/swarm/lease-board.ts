/**
 * The origin leases this daemon holds right now, by blob: published in its
 * have-map answers (`leasing`), so every member sees who is fetching which
 * chunk from the origin, whoever granted it. Two members leasing one chunk
 * reveal a coordinator that granted it twice (docs/protocol.md).
 */
import { EventEmitter } from 'node:events';

export class LeaseBoard extends EventEmitter {
  private byBlob = new Map<string, { chunks: Map<number, number>; seq: number }>();

  constructor() {
    super();
    this.setMaxListeners(0);
  }

  private entry(blob: string) {
    let e = this.byBlob.get(blob);
    if (!e) { e = { chunks: new Map(), seq: 0 }; this.byBlob.set(blob, e); }
    return e;
  }

  /** Chunks of `blob` this daemon now fetches from the origin (counted: runs may overlap a chunk). */
  add(blob: string, chunks: Iterable<number>) {
    const e = this.entry(blob);
    for (const c of chunks) e.chunks.set(c, (e.chunks.get(c) ?? 0) + 1);
    this.bump(blob, e);
  }

  remove(blob: string, chunks: Iterable<number>) {
    const e = this.byBlob.get(blob);
    if (!e) return;
    for (const c of chunks) {
      const n = (e.chunks.get(c) ?? 1) - 1;
      if (n <= 0) e.chunks.delete(c);
      else e.chunks.set(c, n);
    }
    // The entry stays (a few bytes per blob ever leased): its seq is part of the have-map
    // sequence that pollers compare with, and must never go back.
    this.bump(blob, e);
  }

  private bump(blob: string, e: { seq: number }) {
    e.seq++;
    this.emit(`change:${blob}`);
  }

  /** Whether chunk c of `blob` is leased now. */
  has(blob: string, c: number): boolean {
    return !!this.byBlob.get(blob)?.chunks.has(c);
  }

  /** Whether any chunk of `blob` is leased now. */
  any(blob: string): boolean {
    return !!this.byBlob.get(blob)?.chunks.size;
  }

  /** Changes so far (monotonic while anyone may still compare it). */
  seq(blob: string): number {
    return this.byBlob.get(blob)?.seq ?? 0;
  }
}
