/**
 * One blob on disk: `<sha>.data` (sparse, full length) and `<sha>.journal`
 * (4-byte little-endian indices of verified chunks, appended only after the
 * chunk's bytes are fsync'ed). A crash can lose journal records (the chunk is
 * fetched again) but can never leave a record whose bytes are not on disk.
 *
 * Trust in stored bytes: a chunk written by this process was hashed in memory
 * against its expected hash just before the write. A chunk restored from the
 * journal at start is held but *unconfirmed*: before any byte of it is served
 * (to an agent or a peer) it is read back and hashed once. The scrub job
 * re-hashes every held chunk on a schedule. A chunk whose bytes no longer
 * match is dropped (journal rewritten) and fetched again when next wanted.
 */
import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import { Readable } from 'node:stream';
import { writeFileAtomic } from '../../manifests/atomic-file.js';
import { ShoalError, fromSystemError } from '../errors.js';
import type { HashPool } from './hash-pool.js';
import { chunkCount } from '../../manifests/chunker.js';

export interface BlobLayout {
  sha256: string;
  size: number;
  chunkSize: number;
  /** Per-chunk SHA-256; '' where not known yet (a learned blob). */
  chunks: string[];
  /**
   * Content-addressed: no signed chunk list, only the whole SHA-256 (a URL, a .deb, an
   * OCI blob). Chunk hashes are learned as bytes arrive, and the blob is complete only
   * once the whole file matches `sha256` (docs/content-addressed.md).
   */
  learned?: boolean;
}

/** Timing and sizes of the group commit, injectable for tests. */
export interface BlobTiming {
  /** An fdatasync at the latest after this many written bytes… */
  flushBytes: number;
  /** …or this long after the first unsynced write. */
  flushDelayMs: number;
}

/** One fdatasync per 16 MiB or 50 ms: a sync per 4 MiB chunk cost far more disk time (docs/benchmarks.md). */
export const DEFAULT_BLOB_TIMING: BlobTiming = { flushBytes: 16 << 20, flushDelayMs: 50 };
const WRITE_PIECE = 4 << 20;
const READ_PIECE = 1 << 20;

export type ChunkProblem = 'changed-on-disk';

export class Blob extends EventEmitter {
  readonly sha256: string;
  readonly size: number;
  readonly chunkSize: number;
  readonly chunks: string[];
  /** One byte per chunk: 1 = verified and servable. Read-only outside this class. */
  readonly have: Uint8Array;
  /** Chunk hashes are still learned (not yet proven by the whole-file hash). */
  private learning: boolean;
  /** Learned blobs: chunks this daemon fetched from the origin itself (the only ones it shares before the proof). */
  private witnessed: Uint8Array;
  private state = { held: 0, seq: 0, pinned: false, readers: 0, writers: 0, lastAccess: Date.now(), failed: undefined as ShoalError | undefined, closed: false };

  get heldCount(): number { return this.state.held; }
  /** Bumped on every change of `have`, for long-polls. */
  get seq(): number { return this.state.seq; }
  get pinned(): boolean { return this.state.pinned; }
  get readers(): number { return this.state.readers; }
  get writers(): number { return this.state.writers; }
  get lastAccess(): number { return this.state.lastAccess; }
  get failed(): ShoalError | undefined { return this.state.failed; }
  get closed(): boolean { return this.state.closed; }

  /** The store's pin flag (persisted by the store in the blob's meta file). */
  setPinned(pinned: boolean) { this.state.pinned = pinned; }
  /** Used now (or at `at`): eviction goes least recently used first. */
  touch(at = Date.now()) { this.state.lastAccess = at; }

  /** Chunks whose journal record is written (what a restart would find). */
  private durable: Uint8Array;
  private durableCount = 0;
  /** Chunks whose bytes on disk were hashed by this process (written from verified memory, or read back). */
  private confirmed: Uint8Array;
  private confirming = new Map<number, Promise<boolean>>();
  private writing = new Set<number>();
  private pending: number[] = [];
  private pendingBytes = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushChain: Promise<void> = Promise.resolve();

  constructor(layout: BlobLayout, readonly dataPath: string, readonly journalPath: string, private data: fs.FileHandle,
    private journal: fs.FileHandle, private hasher: HashPool, private timing: BlobTiming = DEFAULT_BLOB_TIMING) {
    super();
    this.setMaxListeners(0);
    this.sha256 = layout.sha256;
    this.size = layout.size;
    this.chunkSize = layout.chunkSize;
    this.learning = !!layout.learned;
    this.chunks = this.learning ? Array.from({ length: chunkCount(layout.size, layout.chunkSize) }, (_, i) => layout.chunks[i] ?? '') : layout.chunks;
    this.witnessed = new Uint8Array(this.learning ? this.chunks.length : 0);
    this.have = new Uint8Array(this.chunks.length);
    this.durable = new Uint8Array(this.chunks.length);
    this.confirmed = new Uint8Array(this.chunks.length);
  }

  get chunkCount() {
    return this.chunks.length;
  }

  /** Every chunk is verified and durable (and a learned blob proven whole). */
  get complete(): boolean {
    return this.allDurable && !this.learning;
  }

  /** Every chunk is held and durable; a learned blob still awaits its whole-file proof. */
  get allDurable(): boolean {
    return this.durableCount === this.chunkCount && this.heldCount === this.chunkCount && !this.failed;
  }

  /** Chunk hashes are learned, not yet proven by the whole-file hash. */
  get unproven(): boolean {
    return this.learning;
  }

  /**
   * Whether chunk i may be served to a peer: any verified chunk of a proven blob; of an
   * unproven one only what this daemon fetched from the origin itself, so a lie it
   * received is never passed on as if it were its own.
   */
  servable(i: number): boolean {
    return !!this.have[i] && (!this.learning || !!this.witnessed[i]);
  }

  /** The whole file matched its SHA-256: the learned chunk hashes are now the blob's (the store persisted them). */
  proven() {
    if (!this.learning) return;
    this.learning = false;
    this.changed();
    if (this.complete) this.emit('complete');
  }

  /** Resolves when every chunk is held and durable (for a learned blob: ready for its proof). */
  whenAllDurable(): Promise<void> {
    if (this.allDurable) return Promise.resolve();
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<void>((resolve, reject) => {
      const onDone = () => { if (this.allDurable) { cleanup(); resolve(); } };
      const onFail = (e: Error) => { cleanup(); reject(e); };
      const cleanup = () => { this.off('durable', onDone); this.off('failed', onFail); };
      this.on('durable', onDone);
      this.on('failed', onFail);
    });
  }

  chunkRange(i: number): { start: number; end: number } {
    const start = i * this.chunkSize;
    return { start, end: Math.min(start + this.chunkSize, this.size) };
  }

  chunkLength(i: number): number {
    const r = this.chunkRange(i);
    return r.end - r.start;
  }

  /** Applies journal records read at open time (validated by the store): held, durable, not yet confirmed. */
  restore(indices: Iterable<number>) {
    for (const i of indices) {
      if (this.have[i]) continue;
      this.have[i] = 1;
      this.durable[i] = 1;
      this.state.held++;
      this.durableCount++;
    }
    this.state.seq++;
  }

  hasRange(start: number, endInclusive: number, servable = false): boolean {
    if (start < 0 || endInclusive >= this.size || start > endInclusive) return false;
    for (let i = Math.floor(start / this.chunkSize); i <= Math.floor(endInclusive / this.chunkSize); i++) if (servable ? !this.servable(i) : !this.have[i]) return false;
    return true;
  }

  /**
   * The only way bytes enter the cache: hashes `data` against the expected
   * chunk hash and writes it. The chunk can be served at once; it is
   * journaled — held across restarts — only after a batched fdatasync has
   * made it durable. Resolves when `data` may be reused. A learned blob's
   * unknown chunk takes the hash of its bytes (`fromOrigin`: this daemon is
   * its witness).
   */
  async writeChunk(i: number, data: Buffer, fromOrigin = false): Promise<'stored' | 'already'> {
    if (this.closed) throw new ShoalError('aborted', 'blob was closed');
    if (this.failed) throw this.failed;
    if (!Number.isInteger(i) || i < 0 || i >= this.chunkCount) throw new ShoalError('bad-request', `chunk ${i} out of range`);
    if (data.length !== this.chunkLength(i)) throw new ShoalError('chunk-mismatch', `chunk ${i}: got ${data.length} bytes, expected ${this.chunkLength(i)}`);
    const digest = await this.hasher.digest(data);
    const learn = this.learning && this.chunks[i] === '';
    if (!learn && digest !== this.chunks[i]) throw new ShoalError('chunk-mismatch', `chunk ${i} of ${this.sha256.slice(0, 12)}: SHA-256 differs from the expected hash`);
    if (this.closed) throw new ShoalError('aborted', 'blob was closed');
    if (this.have[i] || this.writing.has(i)) return 'already';
    this.writing.add(i);
    if (learn) this.chunks[i] = digest;
    this.state.writers++;
    const { start } = this.chunkRange(i);
    try {
      // At most 4 MiB per write() (chunks may be 64 MiB): larger writes hold a thread-pool thread for long.
      for (let off = 0; off < data.length;) {
        const { bytesWritten } = await this.data.write(data, off, Math.min(WRITE_PIECE, data.length - off), start + off);
        off += bytesWritten;
      }
    } catch (e) {
      if (learn) this.chunks[i] = '';
      throw fromSystemError(e, `writing chunk ${i} of blob ${this.sha256.slice(0, 12)}`);
    } finally {
      this.writing.delete(i);
      this.state.writers--;
    }
    if (this.closed) return 'already';
    if (this.learning && fromOrigin) this.witnessed[i] = 1;
    this.have[i] = 1;
    this.confirmed[i] = 1;
    this.state.held++;
    this.changed();
    this.scheduleFlush(i, data.length);
    return 'stored';
  }

  private changed() {
    this.state.seq++;
    this.emit('change', this.seq);
  }

  private scheduleFlush(i: number, bytes: number) {
    this.pending.push(i);
    this.pendingBytes += bytes;
    if (this.pendingBytes >= this.timing.flushBytes || this.heldCount === this.chunkCount) return void this.flushNow();
    this.flushTimer ??= setTimeout(() => void this.flushNow(), this.timing.flushDelayMs);
  }

  private flushNow(): Promise<void> {
    if (this.flushTimer) { clearTimeout(this.flushTimer); this.flushTimer = undefined; }
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (batch.length) this.flushChain = this.flushChain.then(() => this.flush(batch));
    return this.flushChain;
  }

  private async flush(batch: number[]) {
    if (this.closed || this.failed) return;
    try {
      await this.data.datasync();
      // A chunk dropped since it was written is not recorded.
      const live = batch.filter((idx) => this.have[idx] && !this.durable[idx]);
      const rec = Buffer.alloc(live.length * 4);
      live.forEach((idx, k) => rec.writeUInt32LE(idx, k * 4));
      await this.journal.write(rec);
      for (const idx of live) if (!this.durable[idx]) { this.durable[idx] = 1; this.durableCount++; }
      if (this.allDurable) this.emit('durable');
      if (this.complete) this.emit('complete');
    } catch (e) {
      // The bytes may not be on disk: stop serving them and fail the blob.
      for (const idx of batch) if (this.have[idx] && !this.durable[idx]) { this.have[idx] = 0; this.state.held--; }
      this.state.failed = fromSystemError(e, `syncing blob ${this.sha256.slice(0, 12)}`);
      this.changed();
      this.emit('failed', this.failed);
    }
  }

  /** Resolves when every chunk is verified and durable; rejects if the blob fails or closes first. */
  whenComplete(): Promise<void> {
    if (this.complete) return Promise.resolve();
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<void>((resolve, reject) => {
      const onDone = () => { cleanup(); resolve(); };
      const onFail = (e: Error) => { cleanup(); reject(e); };
      const cleanup = () => { this.off('complete', onDone); this.off('failed', onFail); };
      this.on('complete', onDone);
      this.on('failed', onFail);
    });
  }

  /**
   * Re-hashes chunk i from the data file (`force`: even if this process
   * confirmed it before). False, and the chunk dropped, when its bytes no
   * longer match; false when it is not held.
   */
  recheck(i: number, force = false): Promise<boolean> {
    if (!this.have[i]) return Promise.resolve(false);
    if (this.confirmed[i] && !force) return Promise.resolve(true);
    const running = this.confirming.get(i);
    if (running) return running;
    const { start } = this.chunkRange(i);
    const p = this.hasher.digestFile(this.dataPath, start, this.chunkLength(i)).catch(() => undefined).then(async (digest) => {
      this.confirming.delete(i);
      if (!this.have[i]) return false;
      if (digest === this.chunks[i]) { this.confirmed[i] = 1; return true; }
      await this.drop([i], 'changed-on-disk');
      return false;
    });
    this.confirming.set(i, p);
    return p;
  }

  /** Confirms every chunk of bytes [start, end] before they are served; false if any is not (or no longer) held and servable. */
  async confirmRange(start: number, endInclusive: number): Promise<boolean> {
    if (!this.hasRange(start, endInclusive, true)) return false;
    const first = Math.floor(start / this.chunkSize);
    const last = Math.floor(endInclusive / this.chunkSize);
    const checks: Promise<boolean>[] = [];
    for (let i = first; i <= last; i++) if (!this.confirmed[i]) checks.push(this.recheck(i));
    return (await Promise.all(checks)).every(Boolean);
  }

  /** Confirms every held chunk not yet confirmed by this process; resolves with how many were dropped. */
  async confirmHeld(): Promise<number> {
    const checks: Promise<boolean>[] = [];
    for (let i = 0; i < this.chunkCount; i++) if (this.have[i] && !this.confirmed[i]) checks.push(this.recheck(i));
    return (await Promise.all(checks)).filter((ok) => !ok).length;
  }

  /**
   * Forgets chunks whose stored bytes are bad: not served from now on, the
   * journal rewritten without them (temp + fsync + rename), and fetched
   * again by the next download.
   */
  async drop(indices: number[], problem: ChunkProblem): Promise<void> {
    const gone = indices.filter((i) => this.have[i]);
    if (!gone.length) return;
    for (const i of gone) {
      this.have[i] = 0;
      this.confirmed[i] = 0;
      if (this.learning) { this.chunks[i] = ''; this.witnessed[i] = 0; }
      this.state.held--;
      if (this.durable[i]) { this.durable[i] = 0; this.durableCount--; }
    }
    this.changed();
    this.emit('dropped', gone, problem);
    this.flushChain = this.flushChain.then(() => this.rewriteJournal());
    await this.flushChain;
  }

  private async rewriteJournal() {
    if (this.closed) return;
    const held: number[] = [];
    for (let i = 0; i < this.chunkCount; i++) if (this.durable[i]) held.push(i);
    const rec = Buffer.alloc(held.length * 4);
    held.forEach((idx, k) => rec.writeUInt32LE(idx, k * 4));
    try {
      await this.journal.close();
      await writeFileAtomic(this.journalPath, rec);
      this.journal = await fs.open(this.journalPath, 'a');
    } catch (e) {
      this.state.failed = fromSystemError(e, `rewriting the journal of blob ${this.sha256.slice(0, 12)}`);
      this.emit('failed', this.failed);
    }
  }

  /**
   * Writes held bytes [start, end] to `write` through the already open data
   * file, one reused buffer at a time. Call confirmRange first. `write`
   * resolves once the sink took the bytes.
   */
  async sendRange(start: number, endInclusive: number, buf: Buffer, write: (b: Buffer) => Promise<void>): Promise<void> {
    if (!this.hasRange(start, endInclusive)) throw new ShoalError('not-found', 'range not held');
    this.state.readers++;
    this.touch();
    try {
      for (let pos = start; pos <= endInclusive;) {
        const n = Math.min(buf.length, endInclusive - pos + 1);
        const { bytesRead } = await this.data.read(buf, 0, n, pos);
        if (bytesRead !== n) throw new ShoalError('io', `short read of blob ${this.sha256.slice(0, 12)} at ${pos}`);
        await write(buf.subarray(0, n));
        pos += n;
      }
    } finally {
      this.state.readers--;
    }
  }

  /**
   * A stream of held bytes [start, end], each chunk confirmed before its
   * first byte is read; the blob cannot be evicted while it is open. A chunk
   * found changed on disk ends the stream with an error.
   */
  openRead(start: number, endInclusive: number): Readable {
    if (!this.hasRange(start, endInclusive)) throw new ShoalError('not-found', 'range not held');
    this.state.readers++;
    this.touch();
    const s = Readable.from(this.pieces(start, endInclusive), { objectMode: false, highWaterMark: 2 });
    s.once('close', () => { this.state.readers--; });
    return s;
  }

  private async *pieces(start: number, endInclusive: number): AsyncGenerator<Buffer> {
    for (let pos = start; pos <= endInclusive;) {
      const i = Math.floor(pos / this.chunkSize);
      if (!(await this.recheck(i))) throw new ShoalError('chunk-mismatch', `chunk ${i} of blob ${this.sha256.slice(0, 12)} changed on disk; it was dropped and will be fetched again`);
      const n = Math.min(READ_PIECE, endInclusive - pos + 1, this.chunkRange(i).end - pos);
      const buf = Buffer.allocUnsafe(n);
      const { bytesRead } = await this.data.read(buf, 0, n, pos);
      if (bytesRead !== n) throw new ShoalError('io', `short read of blob ${this.sha256.slice(0, 12)} at ${pos}`);
      yield buf;
      pos += n;
    }
  }

  async close() {
    // Make what was written durable and recorded before the files close.
    await this.flushNow().catch(() => {});
    this.state.closed = true;
    await this.flushChain.catch(() => {});
    this.emit('change', this.seq);
    await Promise.allSettled([this.data.close(), this.journal.close()]);
  }
}
