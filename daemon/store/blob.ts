/**
 * One blob on disk: `<sha>.data` (sparse, full length) and `<sha>.journal`
 * (4-byte little-endian indices of verified chunks, appended only after the
 * chunk's bytes are fsync'ed; 0xFFFFFFFF = the whole-blob hash was checked).
 * A crash can lose journal records (the chunk is fetched again) but can never
 * leave a record whose bytes are not on disk.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import { ShoalError, fromSystemError } from '../../manifests/errors.js';
import { directWritable, openDirect, writtenBytes } from './direct-io.js';
import { hashPool, type HashStream, type LiveCheck } from './hash-pool.js';

export const COMPLETE_RECORD = 0xffffffff;

/** A chunk check that runs while the chunk downloads (Blob.beginChunk). */
export interface LiveChunk {
  /** Bytes [0, n) of the chunk are in the buffer. */
  progress(n: number): void;
  /** The download failed; the buffer may be reused at once. */
  abandon(): void;
  /** The buffer given to beginChunk; writeChunk must get the same one. */
  readonly buf: Buffer;
  readonly result: Promise<{ digest: string | undefined; fed: boolean }>;
}

export interface BlobOptions {
  /** Write aligned chunk pieces with O_DIRECT where possible (see direct-io.ts). */
  directWrites?: boolean;
}

export interface BlobLayout {
  sha256: string;
  size: number;
  chunkSize: number;
  chunks: string[];
}

const FLUSH_BYTES = 16 << 20;
const FLUSH_DELAY_MS = 50;
const WRITE_PIECE = 4 << 20;

export class Blob extends EventEmitter {
  /**
   * Longest a chunk waits for the ones before it to land (see pairTurn), or for
   * its live check once all its bytes are in: about what 4 MiB takes at 40 MiB/s.
   */
  static pairWaitMs = 100;
  readonly sha256: string;
  readonly size: number;
  readonly chunkSize: number;
  readonly chunks: string[];
  /** One byte per chunk: 1 = verified, durable and recorded. */
  readonly have: Uint8Array;
  heldCount = 0;
  complete = false;
  /** Bumped on every change of `have`, for long-polls. */
  seq = 0;
  pinned = false;
  readers = 0;
  writers = 0;
  lastAccess = Date.now();
  failed: ShoalError | undefined;

  private data: fs.FileHandle;
  private journal: fs.FileHandle;
  /** The data file opened for O_DIRECT writes, on first use; resolves undefined where that is refused. */
  private direct: Promise<fs.FileHandle | undefined> | undefined;
  private directWrites: boolean;
  private flushChain: Promise<void> = Promise.resolve();
  private writing = new Set<number>();
  private hasher: HashStream | undefined;
  private prefix = 0;
  /** Bytes [0, fedTo) are handed to the whole-blob hash stream (fed from memory or readable from the file). */
  private fedTo = 0;
  /**
   * Bytes [0, checkedTo) are in fedTo or in paired checks already sent to the
   * hash thread: where the stream will stand once those checks come back fed.
   */
  private checkedTo = 0;
  /** Chunks waiting for their turn to pair (see pairTurn), by start offset. */
  private pairWaiters = new Map<number, () => void>();
  /** Live checks not yet ended (abandoned on close). */
  private liveChecks = new Set<LiveCheck>();
  /** Chunks a download of this process is receiving now (the downloader keeps this set). */
  readonly arriving = new Set<number>();
  /**
   * Other peers are downloading this blob too (the downloader keeps this): they
   * will ask us for the chunks we write within seconds, so those go through the
   * page cache and are served from memory. Otherwise nobody is about to read
   * them, and aligned writes bypass the cache (see writeAt).
   */
  peersDownloading = false;
  private completing: Promise<void> | undefined;
  closed = false;

  constructor(layout: BlobLayout, readonly dataPath: string, data: fs.FileHandle, journal: fs.FileHandle, opts: BlobOptions = {}) {
    super();
    this.directWrites = opts.directWrites ?? true;
    this.setMaxListeners(0);
    this.sha256 = layout.sha256;
    this.size = layout.size;
    this.chunkSize = layout.chunkSize;
    this.chunks = layout.chunks;
    this.have = new Uint8Array(layout.chunks.length);
    this.data = data;
    this.journal = journal;
  }

  get chunkCount() {
    return this.chunks.length;
  }

  chunkRange(i: number): { start: number; end: number } {
    const start = i * this.chunkSize;
    return { start, end: Math.min(start + this.chunkSize, this.size) };
  }

  chunkLength(i: number): number {
    const r = this.chunkRange(i);
    return r.end - r.start;
  }

  /** Applies journal records read at open time (already validated by the store). */
  restore(indices: Iterable<number>, completeRecorded: boolean) {
    for (const i of indices) if (!this.have[i]) { this.have[i] = 1; this.heldCount++; }
    this.durableCount = this.heldCount;
    if (completeRecorded && this.heldCount === this.chunkCount) this.complete = true;
    this.seq++;
  }

  /** Starts following the verified prefix with the whole-blob hasher (after restore, before downloads). */
  startHashing() {
    if (this.complete || this.hasher || this.chunkCount === 0) return;
    this.advancePrefix(); // over the restored chunks
    this.hasher = hashPool.stream(this.dataPath);
    this.hasher.advance(this.prefixBytes);
  }

  bitmap(): Buffer {
    const out = Buffer.alloc(Math.ceil(this.chunkCount / 8));
    for (let i = 0; i < this.chunkCount; i++) if (this.have[i]) out[i >> 3]! |= 0x80 >> (i & 7);
    return out;
  }

  hasRange(start: number, endInclusive: number): boolean {
    if (start < 0 || endInclusive >= this.size || start > endInclusive) return false;
    for (let i = Math.floor(start / this.chunkSize); i <= Math.floor(endInclusive / this.chunkSize); i++) if (!this.have[i]) return false;
    return true;
  }

  /**
   * Starts the check of chunk i before its bytes arrive in `buf`, when the
   * chunk is the next the whole-blob hash needs or right behind checks already
   * sent: the hash thread then hashes the bytes as they arrive, for both
   * hashes in one pass, and the check ends moments after the last byte. The
   * caller reports progress as bytes land, and ends it with
   * writeChunk(i, buf, live) or live.abandon(). Undefined when the chunk
   * cannot pair now (writeChunk then checks it whole), or without the native hasher.
   */
  beginChunk(i: number, buf: Buffer): LiveChunk | undefined {
    if (!this.hasher?.pairs || this.closed || this.failed || !Number.isInteger(i) || i < 0 || i >= this.chunkCount || this.have[i]) return undefined;
    const { start, end } = this.chunkRange(i);
    if (start !== this.checkedTo || buf.length !== end - start) return undefined;
    const check = this.hasher.live(start, buf, this.chunks[i]!);
    if (!check) return undefined;
    this.setCheckedTo(end);
    this.liveChecks.add(check);
    const settle = (fed: boolean) => {
      this.liveChecks.delete(check);
      this.pairAnswered(end, fed);
    };
    const result = check.result.then((r) => { settle(r.fed); return r; }, (e: unknown) => { settle(false); throw e; });
    result.catch(() => {}); // an abandoned download may never await it
    return { progress: check.progress, abandon: check.abandon, buf, result };
  }

  /**
   * The only way bytes enter the cache: hashes `data` against the signed chunk
   * hash and writes it. The chunk can be served at once (verified, and read
   * back by any later read); it is journaled — held across restarts — only
   * after a batched fdatasync has made it durable. `live`: the check begun
   * with beginChunk for these bytes. Resolves when `data` may be reused.
   */
  async writeChunk(i: number, data: Buffer, live?: LiveChunk): Promise<'stored' | 'already'> {
    if (live && live.buf !== data) { live.abandon(); live = undefined; }
    try {
      if (this.closed) throw new ShoalError('aborted', 'blob was closed');
      if (this.failed) throw this.failed;
      if (!Number.isInteger(i) || i < 0 || i >= this.chunkCount) throw new ShoalError('bad-request', `chunk ${i} out of range`);
      if (data.length !== this.chunkLength(i)) throw new ShoalError('chunk-mismatch', `chunk ${i}: got ${data.length} bytes, expected ${this.chunkLength(i)}`);
    } catch (e) {
      live?.abandon();
      throw e;
    }
    const { start } = this.chunkRange(i);
    const digest = await this.chunkDigest(i, data, live);
    if (digest !== this.chunks[i]) {
      throw new ShoalError('chunk-mismatch', `chunk ${i} of ${this.sha256.slice(0, 12)}: SHA-256 differs from the signed manifest`);
    }
    if (this.closed) throw new ShoalError('aborted', 'blob was closed');
    if (this.have[i] || this.writing.has(i)) return 'already';
    this.writing.add(i);
    this.writers++;
    // Without pairing, the next bytes the whole-blob hash needs are hashed from memory while
    // the write runs. (With pairing, a chunk at fedTo that `check` did not take would be
    // refused by a feed for the same reason.)
    let fed: Promise<void> | undefined;
    if (this.hasher && !this.hasher.pairs && start === this.fedTo) {
      fed = this.hasher.feed(start, data).catch(() => {}); // if it cannot, the stream reads the file
      this.setFedTo(start + data.length);
    }
    try {
      let off = 0;
      // At most 4 MiB per write() (chunks may be 64 MiB); smaller pieces measured slower through the thread pool.
      while (off < data.length) off += await this.writeAt(data.subarray(off, off + Math.min(WRITE_PIECE, data.length - off)), start + off);
    } catch (e) {
      throw fromSystemError(e, `writing chunk ${i} of blob ${this.sha256.slice(0, 12)}`);
    } finally {
      await fed; // `data` may be reused once we return
      this.writing.delete(i);
      this.writers--;
    }
    if (this.closed) return 'already';
    this.have[i] = 1;
    this.heldCount++;
    this.seq++;
    this.advancePrefix();
    this.emit('change', this.seq);
    this.scheduleFlush(i, data.length);
    return 'stored';
  }

  /**
   * The SHA-256 of chunk i's bytes `data`: from its live check; else on a pool
   * thread when `data` is in shared memory (the download buffers are). In
   * order, with the native hasher, the whole-blob hash takes the bytes in the same pass.
   */
  private async chunkDigest(i: number, data: Buffer, live: LiveChunk | undefined): Promise<string> {
    if (live) {
      live.progress(data.length);
      const r = await settledWithin(live.result, Blob.pairWaitMs);
      if (!r) {
        // The hash thread is still on a chunk before this one that is slow to arrive (a slow
        // or stalled peer): check this one alone rather than hold its buffer until then.
        live.abandon();
        return hashPool.digest(data);
      }
      if (r.digest === undefined) throw new ShoalError('aborted', 'blob was closed'); // only close abandons a complete chunk
      return r.digest;
    }
    const { start } = this.chunkRange(i);
    if (this.hasher?.pairs && start > this.checkedTo && !this.have[i]) await this.pairTurn(start);
    if (!this.hasher?.pairs || start !== this.checkedTo || this.have[i]) return hashPool.digest(data);
    // The next chunk may send its check at once: the hash thread takes the checks in
    // order, so it goes from this chunk to the next without waiting for a round trip.
    this.setCheckedTo(start + data.length);
    const r = await this.hasher.check(start, data, this.chunks[i]!);
    this.pairAnswered(start + data.length, r.fed);
    return r.digest;
  }

  /** A paired check of the bytes up to `end` came back; `fed`: the whole-blob stream took them. */
  private pairAnswered(end: number, fed: boolean) {
    if (fed) this.setFedTo(Math.max(this.fedTo, end));
    // Not taken (abandoned, bad bytes, or the stream was elsewhere): the checks sent after
    // this one do not pair either, and the stream reads their bytes from the file later.
    else this.checkedTo = this.fedTo;
  }

  /** Writes `piece` at `pos`: with O_DIRECT when it is aligned, no peer is about to read it and the file system takes it; else through the page cache. */
  private async writeAt(piece: Buffer, pos: number): Promise<number> {
    if (this.directWrites && !this.peersDownloading && directWritable(piece, pos)) {
      const h = await (this.direct ??= openDirect(this.dataPath));
      if (h) {
        try {
          const { bytesWritten } = await h.write(piece, 0, piece.length, pos);
          writtenBytes.direct += bytesWritten;
          return bytesWritten;
        } catch (e) {
          // Alignment rules stricter than DIRECT_ALIGN: this blob uses the page cache from now on.
          if ((e as NodeJS.ErrnoException).code !== 'EINVAL') throw e;
          this.directWrites = false;
        }
      } else {
        this.directWrites = false;
      }
    }
    const { bytesWritten } = await this.data.write(piece, 0, piece.length, pos);
    writtenBytes.cached += bytesWritten;
    return bytesWritten;
  }

  /** Verified chunks written but not yet durable, and when they will be synced. */
  private pending: number[] = [];
  private pendingBytes = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  /** Chunks whose journal record is written (what a restart would find). */
  durableCount = 0;

  /**
   * Group commit: one fdatasync per 16 MiB, per 50 ms, or at the last chunk —
   * a sync per 4 MiB chunk costs ~6× the disk bandwidth of batched syncs.
   */
  private scheduleFlush(i: number, bytes: number) {
    this.pending.push(i);
    this.pendingBytes += bytes;
    if (this.pendingBytes >= FLUSH_BYTES || this.heldCount === this.chunkCount) return void this.flushNow();
    this.flushTimer ??= setTimeout(() => void this.flushNow(), FLUSH_DELAY_MS);
  }

  private flushNow(): Promise<void> {
    if (this.flushTimer) { clearTimeout(this.flushTimer); this.flushTimer = undefined; }
    const batch = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    if (!batch.length) return this.flushChain;
    this.flushChain = this.flushChain.then(() => this.flush(batch));
    return this.flushChain;
  }

  private async flush(batch: number[]) {
    if (this.closed || this.failed) return;
    try {
      await this.data.datasync(); // the inode's: O_DIRECT writes and their block allocations too
      const rec = Buffer.alloc(batch.length * 4);
      batch.forEach((idx, k) => rec.writeUInt32LE(idx, k * 4));
      await this.journal.write(rec);
      this.durableCount += batch.length;
      if (this.durableCount === this.chunkCount) void this.finishWhole();
    } catch (e) {
      // The bytes may not be on disk: stop serving them and fail the blob.
      for (const idx of batch) if (this.have[idx]) { this.have[idx] = 0; this.heldCount--; }
      this.seq++;
      this.failed = fromSystemError(e, `syncing blob ${this.sha256.slice(0, 12)}`);
      this.emit('change', this.seq);
      this.emit('failed', this.failed);
    }
  }

  private advancePrefix() {
    let p = this.prefix;
    while (p < this.chunkCount && this.have[p]) p++;
    if (p !== this.prefix) {
      this.prefix = p;
      this.setFedTo(Math.max(this.fedTo, this.prefixBytes));
      this.hasher?.advance(this.prefixBytes);
    }
  }

  private setFedTo(v: number) {
    this.fedTo = v;
    if (v > this.checkedTo) this.setCheckedTo(v);
  }

  private setCheckedTo(v: number) {
    this.checkedTo = v;
    for (const [start, wake] of this.pairWaiters) if (start <= v) wake();
  }

  /**
   * Chunks from concurrent requests land in any order; one that lands just
   * ahead of the whole-blob hash waits a moment for the chunks before it, so
   * that its check can pair with the whole-blob pass instead of the stream
   * reading it back from the file and hashing it a second time. It waits
   * only when every chunk before it is held or on its way here, and then at
   * most `Blob.pairWaitMs`.
   */
  private pairTurn(start: number): Promise<void> {
    if (this.pairWaiters.has(start)) return Promise.resolve();
    for (let c = Math.floor(this.checkedTo / this.chunkSize); c * this.chunkSize < start; c++) {
      if (!this.have[c] && !this.arriving.has(c)) return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const wake = () => { clearTimeout(timer); this.pairWaiters.delete(start); resolve(); };
      const timer = setTimeout(wake, Blob.pairWaitMs);
      this.pairWaiters.set(start, wake);
    });
  }

  /** Length of the verified prefix, in bytes. */
  private get prefixBytes(): number {
    return this.prefix === this.chunkCount ? this.size : this.prefix * this.chunkSize;
  }

  /** Resolves when the blob is complete and its whole SHA-256 checked; rejects if it cannot be. */
  whenComplete(): Promise<void> {
    if (this.complete) return Promise.resolve();
    if (this.failed) return Promise.reject(this.failed);
    const p = new Promise<void>((resolve, reject) => {
      const onDone = () => { cleanup(); resolve(); };
      const onFail = (e: Error) => { cleanup(); reject(e); };
      const cleanup = () => { this.off('complete', onDone); this.off('failed', onFail); };
      this.on('complete', onDone);
      this.on('failed', onFail);
    });
    // An empty blob (or one restored with every chunk but no completion record) completes here.
    if (this.durableCount === this.chunkCount) void this.finishWhole();
    return p;
  }

  private finishWhole(): Promise<void> {
    this.completing ??= (async () => {
      try {
        const digest = this.chunkCount === 0 ? createHash('sha256').digest('hex') : await (this.hasher ??= hashPool.stream(this.dataPath)).finish(this.size);
        this.hasher = undefined;
        if (digest !== this.sha256) {
          // Every chunk matched yet the whole does not: the manifest itself is inconsistent.
          throw new ShoalError('blob-mismatch', `blob ${this.sha256.slice(0, 12)}: chunks verify but the whole file hashes to ${digest.slice(0, 12)}`);
        }
        const rec = Buffer.alloc(4);
        rec.writeUInt32LE(COMPLETE_RECORD, 0);
        await this.journal.write(rec);
        await this.journal.datasync();
        this.complete = true;
        this.seq++;
        this.emit('change', this.seq);
        this.emit('complete');
      } catch (e) {
        this.failed = e instanceof ShoalError ? e : fromSystemError(e, `hashing blob ${this.sha256.slice(0, 12)}`);
        this.emit('failed', this.failed);
      }
    })();
    return this.completing;
  }

  /** Waits until `seq` moves past `since` or the timeout passes; returns the current seq. */
  waitChange(since: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    if (this.seq > since || this.closed) return Promise.resolve(this.seq);
    return new Promise((resolve) => {
      const done = () => { clearTimeout(timer); this.off('change', done); signal?.removeEventListener('abort', done); resolve(this.seq); };
      const timer = setTimeout(done, timeoutMs);
      this.on('change', done);
      signal?.addEventListener('abort', done);
    });
  }

  /**
   * Writes held bytes [start, end] to `write` through the already open data
   * file, one reused buffer at a time: no open/close per request and no
   * garbage per megabyte served. `write` resolves once the sink took the bytes.
   */
  async sendRange(start: number, endInclusive: number, buf: Buffer, write: (b: Buffer) => Promise<void>): Promise<void> {
    if (!this.hasRange(start, endInclusive)) throw new ShoalError('not-found', 'range not held');
    this.readers++;
    this.lastAccess = Date.now();
    try {
      let pos = start;
      while (pos <= endInclusive) {
        const n = Math.min(buf.length, endInclusive - pos + 1);
        const { bytesRead } = await this.data.read(buf, 0, n, pos);
        if (bytesRead !== n) throw new ShoalError('io', `short read of blob ${this.sha256.slice(0, 12)} at ${pos}`);
        await write(buf.subarray(0, n));
        pos += n;
      }
    } finally {
      this.readers--;
    }
  }

  /** A stream of held bytes [start, end]; the blob cannot be evicted while it is open. */
  openRead(start: number, endInclusive: number, highWaterMark = 256 * 1024): Readable {
    if (!this.hasRange(start, endInclusive)) throw new ShoalError('not-found', 'range not held');
    this.readers++;
    this.lastAccess = Date.now();
    const s = createReadStream(this.dataPath, { start, end: endInclusive, highWaterMark });
    s.once('close', () => { this.readers--; });
    return s;
  }

  async close() {
    // Make what was written durable and recorded before the files close.
    await this.flushNow().catch(() => {});
    this.closed = true;
    for (const wake of this.pairWaiters.values()) wake();
    for (const check of this.liveChecks) check.abandon();
    this.hasher?.close();
    await this.flushChain.catch(() => {});
    this.emit('change', this.seq);
    await Promise.allSettled([this.data.close(), this.journal.close(), this.direct?.then((h) => h?.close())]);
  }
}

/** `p`'s value if it settles within `ms`, else undefined (a rejection propagates). */
async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), ms); });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
