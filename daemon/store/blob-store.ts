/**
 * The on-disk chunk store: every blob the daemon holds, their verified-chunk
 * journals, and LRU eviction under a byte budget that never touches pinned
 * blobs or blobs being read or written.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../manifests/atomic-file.js';
import { chunkCount } from '../../manifests/chunker.js';
import { ShoalError, fromSystemError } from '../errors.js';
import { HEX64_RE } from '../../manifests/schema.js';
import type { TokenBucket } from '../common/limits.js';
import { Blob, type BlobLayout, type BlobTiming } from './blob.js';
import { HashPool } from './hash-pool.js';

interface Meta extends BlobLayout {
  pinned?: boolean;
}

export interface StoreEvents {
  evicted?: (sha: string, bytes: number) => void;
  /** Stored chunks found changed on disk and dropped (first read after a restart, or scrub). */
  dropped?: (sha: string, chunks: number[]) => void;
  /** A blob left the cache (removed or evicted) holding these chunks. */
  removed?: (sha: string, chunkCount: number, held: number[]) => void;
  log?: (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
}

export interface StoreOptions {
  /** The hashing threads (one pool per daemon); a store makes its own if not given. */
  hasher?: HashPool;
  timing?: BlobTiming;
}

export class BlobStore {
  private blobs = new Map<string, Blob>();
  private opening = new Map<string, Promise<Blob>>();
  /** Blobs a download is using right now: never evicted. */
  private active = new Map<string, number>();
  readonly dir: string;

  readonly hasher: HashPool;

  private constructor(readonly root: string, public maxBytes: number, private events: StoreEvents, private opts: StoreOptions) {
    this.dir = path.join(root, 'blobs');
    this.hasher = opts.hasher ?? new HashPool();
  }

  static async open(root: string, maxBytes: number, events: StoreEvents = {}, opts: StoreOptions = {}): Promise<BlobStore> {
    const s = new BlobStore(root, maxBytes, events, opts);
    try {
      await fs.mkdir(s.dir, { recursive: true, mode: 0o750 });
      await fs.access(s.dir, fs.constants.W_OK);
    } catch (e) {
      throw fromSystemError(e, `cache directory ${s.dir}`);
    }
    for (const name of await fs.readdir(s.dir)) {
      if (name.endsWith('.tmp')) await fs.rm(path.join(s.dir, name), { force: true });
      const m = /^([0-9a-f]{64})\.meta\.json$/.exec(name);
      if (m) await s.load(m[1]!);
    }
    return s;
  }

  private paths(sha: string) {
    const base = path.join(this.dir, sha);
    return { meta: `${base}.meta.json`, data: `${base}.data`, journal: `${base}.journal` };
  }

  /** Reloads one blob; anything torn or inconsistent is discarded, never trusted. */
  private async load(sha: string) {
    const p = this.paths(sha);
    try {
      const meta = JSON.parse(await fs.readFile(p.meta, 'utf8')) as Meta;
      if (!validLayout(meta) || meta.sha256 !== sha) throw new Error('meta does not describe this blob');
      const st = await fs.stat(p.data);
      if (st.size !== meta.size) throw new Error(`data file is ${st.size} bytes, expected ${meta.size}`);
      // An unproven learned blob starts over: its chunk hashes were never more than claims.
      if (meta.learned) await fs.truncate(p.journal, 0).catch(() => {});
      const journal = meta.learned ? Buffer.alloc(0) : await fs.readFile(p.journal).catch(() => Buffer.alloc(0));
      // Cut a torn final record off before anything is appended, or every later record would be misaligned.
      if (journal.length % 4 !== 0) await fs.truncate(p.journal, journal.length - (journal.length % 4));
      const indices: number[] = [];
      // Records past the chunk count (such as an older version's 0xFFFFFFFF "whole file checked") are ignored.
      for (let off = 0; off + 4 <= journal.length; off += 4) {
        const v = journal.readUInt32LE(off);
        if (v < meta.chunks.length) indices.push(v);
      }
      const blob = await this.openBlob(meta);
      blob.restore(indices);
      blob.setPinned(!!meta.pinned);
      blob.touch((await fs.stat(p.meta)).mtimeMs);
      this.blobs.set(sha, blob);
    } catch (e) {
      this.events.log?.('warn', 'discarding unreadable cached blob', { blob: sha, reason: (e as Error).message });
      await this.removeFiles(sha);
    }
  }

  private async openBlob(meta: BlobLayout): Promise<Blob> {
    const p = this.paths(meta.sha256);
    const data = await fs.open(p.data, 'r+');
    const journal = await fs.open(p.journal, 'a');
    const blob = new Blob(meta, p.data, p.journal, data, journal, this.hasher, this.opts.timing);
    blob.on('dropped', (chunks: number[]) => this.events.dropped?.(meta.sha256, chunks));
    return blob;
  }

  get(sha: string): Blob | undefined {
    const b = this.blobs.get(sha);
    b?.touch();
    return b;
  }

  list(): Blob[] {
    return [...this.blobs.values()];
  }

  usedBytes(): number {
    let n = 0;
    for (const b of this.blobs.values()) n += b.size;
    return n;
  }

  /**
   * The blob for a manifest file entry, created (sparse, full length) if new. A learned
   * layout (only the whole SHA-256 known) takes any cached blob of that hash and size:
   * the same bytes as a manifest file, a URL, a .deb or an OCI blob are one blob.
   */
  async ensure(layout: BlobLayout): Promise<Blob> {
    const have = this.blobs.get(layout.sha256);
    if (have && layout.learned) {
      if (have.size !== layout.size) throw new ShoalError('inconsistent', `blob ${layout.sha256.slice(0, 12)} is cached with ${have.size} bytes, not ${layout.size}`);
      return have;
    }
    if (have) {
      if (have.unproven) throw new ShoalError('unavailable', `blob ${layout.sha256.slice(0, 12)} is being fetched by its hash alone; ask again when it is complete`);
      if (have.size !== layout.size || have.chunkSize !== layout.chunkSize || have.chunks.some((c, i) => c !== layout.chunks[i])) {
        throw new ShoalError('inconsistent', `blob ${layout.sha256.slice(0, 12)} is cached with a different chunk layout`);
      }
      return have;
    }
    const pending = this.opening.get(layout.sha256);
    if (pending) return pending;
    const p = this.create(layout);
    this.opening.set(layout.sha256, p);
    try {
      return await p;
    } finally {
      this.opening.delete(layout.sha256);
    }
  }

  private async create(layout: BlobLayout): Promise<Blob> {
    if (!validLayout(layout)) throw new ShoalError('inconsistent', 'invalid blob layout');
    await this.reserve(layout.size);
    const p = this.paths(layout.sha256);
    try {
      const fh = await fs.open(p.data, 'w');
      try {
        await fh.truncate(layout.size);
      } finally {
        await fh.close();
      }
      await fs.writeFile(p.journal, Buffer.alloc(0));
      // The meta goes last: without it, a crash leaves files the next start deletes.
      const meta = metaOf(layout, !!layout.learned);
      await writeFileAtomic(p.meta, JSON.stringify(meta));
      const blob = await this.openBlob(meta);
      this.blobs.set(layout.sha256, blob);
      return blob;
    } catch (e) {
      await this.removeFiles(layout.sha256);
      throw fromSystemError(e, `creating blob ${layout.sha256.slice(0, 12)} in ${this.dir}`);
    }
  }

  /** Marks a blob as in use by a download (not evictable) until the returned release is called. */
  hold(sha: string): () => void {
    this.active.set(sha, (this.active.get(sha) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.active.get(sha) ?? 1) - 1;
      if (n <= 0) this.active.delete(sha);
      else this.active.set(sha, n);
    };
  }

  evictable(b: Blob): boolean {
    return !b.pinned && b.readers === 0 && b.writers === 0 && !this.active.has(b.sha256);
  }

  /** Frees space for `bytes` more by evicting least recently used blobs. */
  async reserve(bytes: number): Promise<void> {
    if (bytes > this.maxBytes) throw new ShoalError('no-space', `a ${bytes}-byte blob is larger than the cache budget (${this.maxBytes} bytes)`);
    const r = await this.evictDownTo(this.maxBytes - bytes);
    if (!r.reached) throw new ShoalError('no-space', `cache budget exhausted: ${this.usedBytes()} bytes are pinned or in use`);
  }

  /** Evicts LRU blobs (never pinned or in use) until at most `target` bytes are used, or nothing more may go. */
  async evictDownTo(target: number): Promise<{ freed: number; reached: boolean }> {
    let used = this.usedBytes();
    let freed = 0;
    if (used > target) {
      const victims = [...this.blobs.values()].filter((b) => this.evictable(b)).sort((a, b) => a.lastAccess - b.lastAccess);
      for (const v of victims) {
        if (used <= target) break;
        await this.remove(v.sha256);
        used -= v.size;
        freed += v.size;
        this.events.evicted?.(v.sha256, v.size);
      }
    }
    return { freed, reached: used <= target };
  }

  async remove(sha: string): Promise<void> {
    const b = this.blobs.get(sha);
    this.blobs.delete(sha);
    if (b) {
      const held: number[] = [];
      for (let i = 0; i < b.chunkCount; i++) if (b.have[i]) held.push(i);
      if (held.length) this.events.removed?.(sha, b.chunkCount, held);
    }
    if (b) await b.close();
    await this.removeFiles(sha);
  }

  private async removeFiles(sha: string) {
    const p = this.paths(sha);
    // Meta first: once it is gone the blob no longer exists for the next start.
    for (const f of [p.meta, p.journal, p.data]) await fs.rm(f, { force: true }).catch(() => {});
  }

  async setPinned(sha: string, pinned: boolean): Promise<void> {
    const b = this.blobs.get(sha);
    if (!b) throw new ShoalError('not-found', `blob ${sha} is not cached`);
    b.setPinned(pinned);
    await this.writeMeta(b);
  }

  /** `learned`: written as unproven (no chunk hashes), whatever the blob holds now. */
  private async writeMeta(b: Blob, learned = b.unproven) {
    await writeFileAtomic(this.paths(b.sha256).meta, JSON.stringify(metaOf(b, learned)));
  }

  /**
   * The proof of a learned blob, once every chunk is durable: the data file hashed end to
   * end against the blob's SHA-256. On a match the learned chunk hashes are persisted
   * (temp + fsync + rename) and the blob becomes an ordinary, complete one; on a mismatch
   * nothing changes and false is returned (the downloader finds the bad chunks).
   */
  async prove(b: Blob): Promise<boolean> {
    if (!b.unproven) return b.complete;
    if (!b.allDurable) return false;
    const digest = await this.hasher.digestFile(b.dataPath, 0, b.size).catch(() => undefined);
    if (digest !== b.sha256 || !b.allDurable || b.closed) return false;
    await this.writeMeta(b, false);
    b.proven();
    return true;
  }

  /**
   * Re-hashes every held chunk from disk, at most `bucket`'s rate; drops the
   * ones that no longer match (they are fetched again when next wanted).
   */
  async scrub(bucket: TokenBucket, signal?: AbortSignal): Promise<{ chunks: number; bytes: number; bad: number }> {
    const r = { chunks: 0, bytes: 0, bad: 0 };
    for (const b of [...this.blobs.values()]) {
      for (let i = 0; i < b.chunkCount; i++) {
        if (b.closed) break;
        if (!b.have[i]) continue;
        signal?.throwIfAborted();
        await bucket.take(b.chunkLength(i), signal);
        r.chunks++;
        r.bytes += b.chunkLength(i);
        if (!(await b.recheck(i, true)) && !b.closed) r.bad++;
      }
    }
    return r;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.blobs.values()].map((b) => b.close()));
  }
}

/** What a blob's meta file says: an unproven learned blob keeps no chunk hashes (they are only claims). */
function metaOf(b: BlobLayout & { pinned?: boolean }, learned: boolean): Meta {
  const base = { sha256: b.sha256, size: b.size, chunkSize: b.chunkSize, ...(b.pinned !== undefined ? { pinned: b.pinned } : {}) };
  return learned ? { ...base, chunks: [], learned: true } : { ...base, chunks: b.chunks };
}

function validLayout(m: Partial<BlobLayout>): m is BlobLayout {
  return typeof m.sha256 === 'string' && HEX64_RE.test(m.sha256)
    && Number.isSafeInteger(m.size) && m.size! >= 0
    && Number.isSafeInteger(m.chunkSize) && m.chunkSize! > 0
    && Array.isArray(m.chunks)
    && (m.learned === true
      ? m.chunks.length === 0 || (m.chunks.length === chunkCount(m.size!, m.chunkSize!) && m.chunks.every((c) => c === '' || (typeof c === 'string' && HEX64_RE.test(c))))
      : m.chunks.length === chunkCount(m.size!, m.chunkSize!) && m.chunks.every((c) => typeof c === 'string' && HEX64_RE.test(c)));
}
