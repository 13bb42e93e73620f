/**
 * The site engine of one daemon: peers, the lease coordinator and the blob
 * downloads. One download per blob, however many fetches ask for it.
 */
import { systemClock, type Clock } from '../common/clock.js';
import type { Config } from '../config/config.js';
import type { Logger } from '../common/log.js';
import type { OriginClient } from '../origin/origin-client.js';
import type { BlobStore } from '../store/blob-store.js';
import type { BlobLayout } from '../store/blob.js';
import { BufferPool } from '../store/buffer-pool.js';
import { LeaseCoordinator } from './coordinator.js';
import { BlobDownload, DEFAULT_DOWNLOAD_TIMING, type DownloadTiming } from './downloader.js';
import { coordinatorFor, hrwRank } from './hrw.js';
import { LeaseBoard } from './lease-board.js';
import { MAX_LEASE_LIST } from '../peers/wire.js';
import type { PeerClient } from '../peers/peer-client.js';
import type { PeerTable } from '../peers/peer-table.js';
import type { Kind } from '../frontends/content.js';

export interface SwarmStats {
  /** A verified chunk of `bytes` was stored; it came from `source` (peer id when from a peer). */
  stored(source: 'origin' | 'peer', bytes: number, peerId: string | undefined, kind: Kind): void;
  verifyFailure(source: 'origin' | 'peer'): void;
  /** A coordinator proved unreliable for a blob and was skipped. */
  distrusted(): void;
}

/** The settings a download reads (a live view of the daemon's config). */
export type SwarmConfig = Pick<Config, 'chunkConcurrency' | 'originConcurrency' | 'noProgressTimeoutMs' | 'leaseRunChunks' | 'leaseTtlMs' | 'minPeerBytesPerSec' | 'banMs'>;

/** What a download needs of the rest of the daemon: narrow, so tests can supply in-memory fakes. */
export interface SwarmContext {
  selfId: string;
  config: SwarmConfig;
  log: Logger;
  clock: Clock;
  timing: DownloadTiming;
  store: Pick<BlobStore, 'hold' | 'prove' | 'remove' | 'hasher'>;
  table: Pick<PeerTable, 'usable' | 'get' | 'isBanned' | 'on' | 'off' | 'ban' | 'markDown' | 'memberIds'>;
  client: Pick<PeerClient, 'have' | 'range' | 'lease'>;
  origin: Pick<OriginClient, 'fetchRange' | 'ignoresRange'>;
  coordinator: LeaseCoordinator;
  stats: SwarmStats;
  /** Chunk buffers shared by every download of this daemon. */
  buffers: BufferPool;
  /** Members in HRW order for a blob (us included): the coordinator first, then its successors. */
  rankFor(blob: string): string[];
  /** The origin leases this daemon holds now, shown in its have-maps. */
  board: LeaseBoard;
  /** Whether the origin may be used now (origin windows). */
  originAllowed(): boolean;
}

export interface SwarmDeps extends Omit<SwarmContext, 'coordinator' | 'rankFor' | 'board' | 'buffers' | 'clock' | 'timing' | 'store' | 'table'> {
  store: BlobStore;
  table: PeerTable;
  clock?: Clock;
  timing?: Partial<DownloadTiming>;
}

/** Finished downloads kept for the dashboard. */
const RECENT_DOWNLOADS = 16;

export class Swarm {
  readonly coordinator: LeaseCoordinator;
  private downloads = new Map<string, BlobDownload>();
  readonly ctx: SwarmContext;
  readonly store: BlobStore;
  readonly board = new LeaseBoard();

  constructor(base: SwarmDeps) {
    const clock = base.clock ?? systemClock;
    this.store = base.store;
    this.coordinator = new LeaseCoordinator({
      selfId: base.selfId, ttlMs: base.config.leaseTtlMs, clock,
      isLive: (id) => id === base.selfId || !!base.table.get(id)?.healthy,
      ranksFirst: (blob) => coordinatorFor(blob, base.table.memberIds()) === base.selfId,
      wasCoordinator: (blob, id) => coordinatorFor(blob, [...base.table.memberIds(), id]) === id,
    });
    // Peer fetches plus the chunk each origin run is filling.
    const buffers = new BufferPool(base.config.chunkConcurrency + base.config.originConcurrency);
    this.ctx = {
      ...base, clock, timing: { ...DEFAULT_DOWNLOAD_TIMING, ...base.timing }, coordinator: this.coordinator, buffers,
      rankFor: (blob) => hrwRank(blob, base.table.memberIds()),
      board: this.board,
    };
    base.table.on('leave', (p) => { this.coordinator.memberLeft(p.id); this.coordinator.dropHolder(p.id); });
    base.table.on('ban', (p) => this.coordinator.dropHolder(p.id));
  }

  /** Starts (or joins) the download of a blob; resolves with the download handle. `kind`: who asked first (savings figures). */
  async download(layout: BlobLayout, urls: string[], kind: Kind = 'native'): Promise<BlobDownload> {
    const running = this.downloads.get(layout.sha256);
    if (running && running.state === 'running') return running;
    const blob = await this.store.ensure(layout);
    const again = this.downloads.get(layout.sha256);
    if (again && again.state === 'running') return again;
    const d = new BlobDownload(this.ctx, blob, urls, kind);
    this.downloads.set(layout.sha256, d);
    // A finished download leaves the map (an apt proxy sees thousands of blobs) for a short recent list.
    void d.done.catch(() => {}).finally(() => {
      if (this.downloads.get(layout.sha256) === d) this.downloads.delete(layout.sha256);
      this.finished = [d, ...this.finished.filter((x) => x.blob.sha256 !== d.blob.sha256)].slice(0, RECENT_DOWNLOADS);
    });
    return d;
  }

  /** Downloads that ended lately, newest first (the dashboard keeps showing their chunk maps). */
  recent(): BlobDownload[] {
    return this.finished;
  }
  private finished: BlobDownload[] = [];

  /**
   * Stored chunks failed their re-check and are gone: the blob's coordinator
   * must stop naming us as their holder, or others would ask us in vain.
   */
  async chunksDropped(sha: string, chunks: number[]): Promise<void> {
    const blob = this.store.get(sha);
    if (blob) await this.chunksGone(sha, blob.chunkCount, chunks);
  }

  /**
   * Chunks we held are gone (dropped at rest, the blob removed or evicted):
   * tell the blob's coordinator, so it names us no more and the next asker is
   * granted them at once. If this is lost, the coordinator learns it when we
   * ask for them again (coordinator.ts); others find us lacking them (416).
   */
  async chunksGone(sha: string, chunkCount: number, chunks: number[]): Promise<void> {
    const coord = this.ctx.rankFor(sha)[0];
    const p = coord && coord !== this.ctx.selfId ? this.ctx.table.get(coord) : undefined;
    for (let k = 0; k < chunks.length; k += MAX_LEASE_LIST) {
      const req = { blob: sha, peer: this.ctx.selfId, chunks: chunkCount, release: chunks.slice(k, k + MAX_LEASE_LIST) };
      if (!p) this.coordinator.handle(req, chunkCount);
      else await this.ctx.client.lease(p, req, AbortSignal.timeout(5000)).catch(() => {});
    }
  }

  active(): BlobDownload[] {
    return [...this.downloads.values()].filter((d) => d.state === 'running');
  }

  /** The running download of a blob, or its last finished one still in the recent list. */
  get(sha: string): BlobDownload | undefined {
    return this.downloads.get(sha) ?? this.finished.find((d) => d.blob.sha256 === sha);
  }

  /**
   * Graceful stop: grant no more leases, let chunk transfers in flight finish
   * (at most `drainMs`), then cancel — which hands unfinished leases back.
   */
  async stop(drainMs = 5000) {
    this.coordinator.stopGranting();
    const running = [...this.downloads.values()].filter((d) => d.state === 'running');
    await Promise.all(running.map((d) => d.drain(drainMs)));
    for (const d of running) d.cancel('daemon stopping');
    await Promise.allSettled(running.map((d) => d.done));
  }
}
