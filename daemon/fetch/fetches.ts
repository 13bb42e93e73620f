/**
 * Fetch jobs: an agent names a manifest; the daemon fetches and verifies it
 * (trusted keys, threshold, expiry, rollback), keeps it, and downloads every
 * file through the swarm. The same blob asked twice is one download.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../manifests/atomic-file.js';
import { ShoalError, isShoalError } from '../errors.js';
import type { PublicKey } from '../../manifests/keys.js';
import type { ManifestBody, ManifestFile } from '../../manifests/schema.js';
import { verifyChannel, verifyManifest, type Verified } from '../../manifests/verify.js';
import type { Config } from '../config/config.js';
import type { Logger } from '../common/log.js';
import type { OriginClient } from '../origin/origin-client.js';
import type { DaemonState } from './state.js';
import type { BlobDownload, Stall } from '../swarm/downloader.js';
import type { Swarm } from '../swarm/swarm.js';
import type { ArtifactView, FetchStatus } from '../admin/api.js';
import type { Content } from '../frontends/content.js';

export type { ArtifactView, FetchStatus };

export class FetchJob {
  readonly id = randomBytes(8).toString('hex');
  state: FetchStatus['state'] = 'resolving';
  manifest: Verified<ManifestBody> | undefined;
  downloads: Array<{ file: ManifestFile; download: BlobDownload }> = [];
  error: ShoalError | undefined;
  readonly createdAt = new Date();
  finishedAt: Date | undefined;
  done!: Promise<void>;
  channel: string | undefined;
  cancelled = false;
  constructor(public manifestUrl: string | undefined, readonly channelUrl?: string, readonly byHash?: UrlRef) {}

  status(): FetchStatus {
    const files = this.downloads.map(({ file, download }) => ({
      path: file.path, blob: file.sha256, size: download.blob.size, chunks: download.blob.chunkCount,
      held: download.blob.heldCount, state: download.state, type: file.type ?? 'file',
    }));
    const bytes = { origin: 0, peer: 0 };
    for (const { download } of this.downloads) { bytes.origin += download.bytes.origin; bytes.peer += download.bytes.peer; }
    const m = this.manifest?.body;
    const size = m ? m.files.reduce((n, f) => n + f.size, 0) : this.downloads.reduce((n, { download }) => n + download.blob.size, 0);
    const held = this.downloads.reduce((n, { download: { blob } }) => n + Math.min(blob.size, blob.heldCount * blob.chunkSize), 0);
    return {
      id: this.id, state: this.state, kind: this.byHash ? 'url' : 'native',
      ...(this.byHash ? { url: this.byHash.url, sha256: this.byHash.sha256 } : {}),
      ...(this.manifestUrl ? { manifestUrl: this.manifestUrl } : {}),
      ...(this.channelUrl ? { channelUrl: this.channelUrl, ...(this.channel ? { channel: this.channel } : {}) } : {}),
      ...(this.manifest ? { manifestId: this.manifest.id, name: m!.name, version: m!.version } : {}),
      size, held, bytes, files,
      ...(this.downloads.some(({ download }) => download.state === 'running' && download.waiting) ? { waiting: 'origin-window' as const } : {}),
      ...this.stalled(),
      ...(this.error ? { error: { code: this.error.code, message: this.error.message } } : {}),
      createdAt: this.createdAt.toISOString(),
      ...(this.finishedAt ? { finishedAt: this.finishedAt.toISOString() } : {}),
    };
  }

  /** The longest stall among this fetch's running downloads, if any. */
  private stalled(): { stalled?: Stall } {
    let worst: Stall | undefined;
    for (const { download } of this.downloads) {
      const st = download.stalled();
      if (st && (!worst || st.forMs > worst.forMs)) worst = st;
    }
    return worst ? { stalled: worst } : {};
  }
}

/** A manifest we verified and keep: its id and signed body. */
export interface StoredManifest {
  id: string;
  body: ManifestBody;
}

/** A plain URL whose SHA-256 the asker knows (an OTA agent's download). */
export interface UrlRef {
  url: string;
  sha256: string;
  size?: number;
}

export interface FetchRequest {
  manifestUrl?: string;
  channelUrl?: string;
  manifest?: Buffer;
  byHash?: UrlRef;
  /** Use the origin now even outside the origin windows. */
  ignoreOriginWindow?: boolean;
}

export interface FetchDeps {
  config: Config;
  origin: OriginClient;
  swarm: Swarm;
  state: DaemonState;
  trustedKeys: PublicKey[];
  content: Content;
  log: Logger;
  onFinished?(job: FetchJob): void;
}

export class FetchManager {
  private jobs = new Map<string, FetchJob>();
  /** The verified manifests we hold, by name/version: verified once, not on every read. */
  private byVersion = new Map<string, StoredManifest>();
  readonly manifestDir: string;

  constructor(private d: FetchDeps) {
    this.manifestDir = path.join(d.config.cacheDir, 'manifests');
  }

  async init() {
    await fs.mkdir(this.manifestDir, { recursive: true, mode: 0o750 });
    await this.reindex();
  }

  /**
   * Verifies every stored manifest with the current trusted keys (at start, and when
   * keys change). Expiry does not matter for bytes we already verified, so only
   * structure and signatures count.
   */
  private async reindex() {
    const next = new Map<string, StoredManifest>();
    for (const name of await fs.readdir(this.manifestDir)) {
      const m = /^([0-9a-f]{64})\.json$/.exec(name);
      if (!m) continue;
      try {
        const v = this.verify(await fs.readFile(path.join(this.manifestDir, name)), { ignoreExpiry: true });
        if (v.id === m[1]) next.set(`${v.body.name}/${v.body.version}`, { id: v.id, body: v.body });
      } catch (e) {
        this.d.log('warn', 'ignoring stored manifest', { file: name, error: (e as Error).message });
      }
    }
    this.byVersion = next;
  }

  private verify(bytes: Buffer, opts: { ignoreExpiry?: boolean } = {}) {
    if (this.d.trustedKeys.length === 0) throw new ShoalError('bad-config', 'no trustedKeys configured: the daemon cannot accept any manifest');
    return verifyManifest(bytes, {
      keys: this.d.trustedKeys,
      threshold: this.d.config.threshold,
      ...(opts.ignoreExpiry ? { now: new Date(0) } : { lastSequence: (b: { name: string }) => this.d.state.lastSequence(b.name) }),
      limits: { maxBytes: this.d.config.maxManifestBytes },
    });
  }

  /** Fetches and verifies a channel pointer without acting on it (channel watch). */
  async peekChannel(url: string) {
    const doc = await this.d.origin.fetchDocument(url, 1 << 20);
    return verifyChannel(doc, { keys: this.d.trustedKeys, threshold: this.d.config.threshold }).body;
  }

  /** Whether a job for this channel URL is still running. */
  channelJobRunning(url: string): boolean {
    return [...this.jobs.values()].some((j) => j.channelUrl === url && !j.finishedAt);
  }

  /** New trusted keys (SIGHUP): later verifications use them, and stored manifests are judged by them again. */
  async setTrustedKeys(keys: PublicKey[]) {
    this.d.trustedKeys = keys;
    await this.reindex();
  }

  /** Import verifies like a fetch: trusted keys, threshold, expiry and rollback. */
  verifyForImport(bytes: Buffer): Verified<ManifestBody> {
    return this.verify(bytes);
  }

  /** Keeps a verified manifest: written atomically, indexed, its sequence accepted. */
  async recordManifest(v: Verified<ManifestBody>, bytes: Buffer): Promise<void> {
    await writeFileAtomic(path.join(this.manifestDir, `${v.id}.json`), bytes);
    this.byVersion.set(`${v.body.name}/${v.body.version}`, { id: v.id, body: v.body });
    await this.d.state.accept(v.body.name, v.body.sequence);
  }

  async manifestBytes(id: string): Promise<Buffer | undefined> {
    if (!/^[0-9a-f]{64}$/.test(id)) return undefined;
    return fs.readFile(path.join(this.manifestDir, `${id}.json`)).catch(() => undefined);
  }

  manifestByVersion(name: string, version: string): StoredManifest | undefined {
    return this.byVersion.get(`${name}/${version}`);
  }

  /** Starts a fetch of a manifest (by URL or inline) or of the latest of a channel. Returns at once; poll the job. */
  create(req: FetchRequest): FetchJob {
    if ([req.manifestUrl, req.manifest, req.channelUrl, req.byHash].filter((x) => x !== undefined).length !== 1) {
      throw new ShoalError('bad-request', 'give exactly one of manifestUrl, channelUrl, manifest, or url with sha256');
    }
    const job = new FetchJob(req.manifestUrl, req.channelUrl, req.byHash);
    this.jobs.set(job.id, job);
    job.done = (req.byHash ? this.runByHash(job, req.byHash, !!req.ignoreOriginWindow) : this.run(job, req)).finally(() => {
      job.finishedAt = new Date();
      this.d.onFinished?.(job);
    });
    job.done.catch(() => {});
    this.prune();
    return job;
  }

  /** Resolves a signed channel pointer: trust, expiry, rollback per name+channel; returns the manifest bytes it names. */
  private async resolveChannel(job: FetchJob, channelUrl: string): Promise<{ bytes: Buffer; expectId: string; name: string; accept: () => Promise<void> }> {
    const doc = await this.d.origin.fetchDocument(channelUrl, 1 << 20);
    if (this.d.trustedKeys.length === 0) throw new ShoalError('bad-config', 'no trustedKeys configured: the daemon cannot accept any channel');
    const c = verifyChannel(doc, {
      keys: this.d.trustedKeys, threshold: this.d.config.threshold,
      lastSequence: (b) => this.d.state.lastChannelSequence(b.name, b.channel!),
    });
    job.channel = c.body.channel;
    job.manifestUrl = c.body.manifestUrl;
    const bytes = await this.d.origin.fetchDocument(c.body.manifestUrl, this.d.config.maxManifestBytes);
    return { bytes, expectId: c.body.manifestId, name: c.body.name, accept: () => this.d.state.accept(c.body.name, c.body.sequence, c.body.channel) };
  }

  private async run(job: FetchJob, req: FetchRequest) {
    try {
      const viaChannel = req.channelUrl ? await this.resolveChannel(job, req.channelUrl) : undefined;
      const bytes = viaChannel?.bytes ?? req.manifest ?? (await this.d.origin.fetchDocument(req.manifestUrl!, this.d.config.maxManifestBytes));
      const v = this.verify(bytes);
      if (viaChannel && v.id !== viaChannel.expectId) {
        throw new ShoalError('inconsistent', `the manifest at ${job.manifestUrl} has id ${v.id}, but the channel names ${viaChannel.expectId}`);
      }
      // A channel of one artifact may not hand out another's manifest, however validly signed.
      if (viaChannel && v.body.name !== viaChannel.name) {
        throw new ShoalError('inconsistent', `the channel is for ${viaChannel.name}, but its manifest is ${v.body.name}`);
      }
      await viaChannel?.accept();
      job.manifest = v;
      await this.recordManifest(v, bytes);
      job.state = 'running';
      for (const file of v.body.files) {
        const download = await this.d.swarm.download({ sha256: file.sha256, size: file.size, chunkSize: file.chunkSize, chunks: file.chunks }, file.urls);
        if (req.ignoreOriginWindow) download.override = true;
        job.downloads.push({ file, download });
      }
      await Promise.all(job.downloads.map((x) => x.download.done));
      job.state = 'done';
      this.d.log('info', 'fetch done', { job: job.id, name: v.body.name, version: v.body.version, ...job.status().bytes });
    } catch (e) {
      throw this.failed(job, e);
    }
  }

  /** A URL with a known SHA-256: one learned blob, fetched once per site, proven whole before it is done. */
  private async runByHash(job: FetchJob, ref: UrlRef, override: boolean) {
    try {
      job.state = 'running';
      const { blob, download } = await this.d.content.acquire({ sha256: ref.sha256, ...(ref.size !== undefined ? { size: ref.size } : {}), urls: [ref.url], kind: 'url' }, { override });
      // A local hit is a download with nothing to do: the job looks the same either way.
      const dl = download ?? (await this.d.swarm.download({ sha256: blob.sha256, size: blob.size, chunkSize: blob.chunkSize, chunks: blob.chunks }, [ref.url], 'url'));
      const name = new URL(ref.url).pathname.split('/').filter(Boolean).pop() ?? blob.sha256;
      job.downloads.push({ file: { path: name, size: blob.size, sha256: blob.sha256, chunkSize: blob.chunkSize, chunks: [], urls: [ref.url] }, download: dl });
      await dl.done;
      job.state = 'done';
      this.d.log('info', 'fetch done', { job: job.id, url: ref.url, sha256: ref.sha256, ...job.status().bytes });
    } catch (e) {
      throw this.failed(job, e);
    }
  }

  private failed(job: FetchJob, e: unknown): ShoalError {
    job.state = job.cancelled ? 'cancelled' : 'failed';
    job.error = job.cancelled ? new ShoalError('aborted', 'cancelled by request') : isShoalError(e) ? e : new ShoalError('internal', (e as Error).message);
    this.d.log('warn', 'fetch failed', { job: job.id, code: job.error.code, error: job.error.message });
    return job.error;
  }

  get(id: string): FetchJob | undefined {
    return this.jobs.get(id);
  }

  /** Cancels a job; a blob download another running job still needs goes on. */
  cancel(id: string): FetchJob {
    const job = this.jobs.get(id);
    if (!job) throw new ShoalError('not-found', `no fetch ${id}`);
    if (job.finishedAt) return job;
    job.cancelled = true;
    const stillNeeded = new Set<string>();
    for (const other of this.jobs.values()) if (other !== job && !other.finishedAt && !other.cancelled) for (const d of other.downloads) stillNeeded.add(d.file.sha256);
    for (const { download } of job.downloads) if (!stillNeeded.has(download.blob.sha256)) download.cancel('fetch cancelled');
    return job;
  }

  /** Every artifact whose verified manifest we hold, with what of it is cached. */
  async artifacts(): Promise<ArtifactView[]> {
    const out: ArtifactView[] = [];
    for (const v of this.byVersion.values()) {
      const { name, version } = v.body;
      const files = v.body.files.map((f) => {
        const b = this.d.swarm.store.get(f.sha256);
        return { path: f.path, size: f.size, blob: f.sha256, type: f.type ?? 'file', held: b?.heldCount ?? 0, chunks: f.chunks.length, complete: !!b?.complete, pinned: !!b?.pinned };
      });
      out.push({
        name, version, sequence: v.body.sequence, manifestId: v.id, size: files.reduce((n, f) => n + f.size, 0),
        complete: files.every((f) => f.complete), pinned: files.length > 0 && files.every((f) => f.pinned), files,
      });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name) || b.sequence - a.sequence);
  }

  private requireArtifact(name: string, version: string): StoredManifest {
    const v = this.manifestByVersion(name, version);
    if (!v) throw new ShoalError('not-found', `no artifact ${name} ${version} in the cache`);
    return v;
  }

  /** Pins (or unpins) every blob of an artifact: pinned blobs are never evicted. */
  async pin(name: string, version: string, pinned: boolean): Promise<void> {
    const v = this.requireArtifact(name, version);
    for (const f of v.body.files) if (this.d.swarm.store.get(f.sha256)) await this.d.swarm.store.setPinned(f.sha256, pinned);
  }

  /** Removes an artifact: its manifest, and its blobs unless another artifact shares them or a download uses them. */
  async remove(name: string, version: string): Promise<{ blobsRemoved: number; bytesFreed: number }> {
    const v = this.requireArtifact(name, version);
    const shared = new Set<string>();
    for (const other of this.byVersion.values()) if (other.id !== v.id) for (const f of other.body.files) shared.add(f.sha256);
    let blobsRemoved = 0;
    let bytesFreed = 0;
    const store = this.d.swarm.store;
    for (const f of v.body.files) {
      const b = store.get(f.sha256);
      if (!b || shared.has(f.sha256)) continue;
      if (this.d.swarm.get(f.sha256)?.state === 'running' || b.readers > 0) throw new ShoalError('unavailable', `${f.path} of ${name} ${version} is in use right now; try again later`);
      await store.remove(f.sha256);
      blobsRemoved++;
      bytesFreed += f.size;
    }
    this.byVersion.delete(`${name}/${version}`);
    await fs.rm(path.join(this.manifestDir, `${v.id}.json`), { force: true });
    return { blobsRemoved, bytesFreed };
  }

  list(): FetchJob[] {
    return [...this.jobs.values()];
  }

  /** Keeps memory bounded: finished jobs beyond the newest 500 are forgotten. */
  private prune() {
    const finished = [...this.jobs.values()].filter((j) => j.finishedAt);
    for (const j of finished.slice(0, Math.max(0, finished.length - 500))) this.jobs.delete(j.id);
  }
}
