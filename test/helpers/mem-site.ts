/**
 * An in-memory site around one BlobDownload: fake peers (have-maps, ranges,
 * leases answered by their own LeaseCoordinator), a fake origin and a fake
 * peer table, all on a FakeClock. No sockets: the download loop's logic is
 * tested on its own, with a real Blob on disk.
 */
import { EventEmitter } from 'node:events';
import { ShoalError } from '../../daemon/errors.js';
import { createLogger } from '../../daemon/common/log.js';
import { BlobStore } from '../../daemon/store/blob-store.js';
import { BufferPool } from '../../daemon/store/buffer-pool.js';
import type { Blob, BlobLayout } from '../../daemon/store/blob.js';
import { LeaseCoordinator } from '../../daemon/swarm/coordinator.js';
import { LeaseBoard } from '../../daemon/swarm/lease-board.js';
import { BlobDownload, DEFAULT_DOWNLOAD_TIMING } from '../../daemon/swarm/downloader.js';
import type { SwarmContext } from '../../daemon/swarm/swarm.js';
import type { Peer } from '../../daemon/peers/peer-table.js';
import { packBits, type HaveMap, type LeaseRequest, type LeaseResponse } from '../../daemon/peers/wire.js';
import { FakeClock } from './fake-clock.js';

/** A peer of the in-memory site. */
export interface MemPeer {
  id: string;
  /** Chunks it holds (1 = held). */
  have: Uint8Array;
  /** Claims its chunks but answers every range with 416 (it dropped them since). */
  lacks?: boolean;
  /** Serve bytes with one flipped bit for these chunks. */
  lies?: Set<number>;
  /** Its coordinator, when it answers lease requests. */
  coordinator?: LeaseCoordinator;
  /** Lease requests fail (a coordinator that went away). */
  leaseFails?: boolean;
  /** Answers lease requests itself (a lying coordinator). */
  answer?: (req: LeaseRequest) => LeaseResponse | Promise<LeaseResponse>;
  /** Chunks it shows as leased from the origin in its have-map. */
  leasing?: Set<number>;
  ranges: number;
  seq: number;
  changed: EventEmitter;
}

export class MemSite {
  readonly clock = new FakeClock();
  readonly peers = new Map<string, MemPeer>();
  readonly banned = new Map<string, string>();
  readonly down: string[] = [];
  readonly table = new EventEmitter();
  /** Ids in coordinator order (first = coordinator); selfId unless told otherwise. */
  coordinatorOrder: string[] = [];
  originBytes = 0;
  /** The origin refuses every request. */
  originDown = false;
  originRequests: Array<[number, number]> = [];
  verifyFailures = 0;
  distrusted = 0;
  readonly board = new LeaseBoard();
  readonly own: LeaseCoordinator;

  private constructor(readonly selfId: string, readonly data: Buffer, readonly layout: BlobLayout, readonly store: BlobStore) {
    this.own = this.coordinator(selfId);
    this.coordinatorOrder = [selfId];
  }

  static async create(dir: string, data: Buffer, layout: BlobLayout): Promise<MemSite> {
    return new MemSite('self00000000', data, layout, await BlobStore.open(dir, 1 << 30));
  }

  /** A coordinator on this site's clock that sees every peer of the site (and us) as live. */
  coordinator(id: string, ttlMs = 1000): LeaseCoordinator {
    return new LeaseCoordinator({ selfId: id, ttlMs, clock: this.clock, isLive: (p) => p === this.selfId || this.peers.has(p) });
  }

  addPeer(id: string, holds: 'all' | 'none' | number[], extra: Partial<MemPeer> = {}): MemPeer {
    const n = this.layout.chunks.length;
    const have = new Uint8Array(n);
    if (holds === 'all') have.fill(1);
    else if (holds !== 'none') for (const i of holds) have[i] = 1;
    const p: MemPeer = { id, have, ranges: 0, seq: 1, changed: new EventEmitter(), ...extra };
    this.peers.set(id, p);
    this.table.emit('join', this.peerObj(p));
    return p;
  }

  private peerObj(p: MemPeer): Peer {
    return { id: p.id, url: `mem://${p.id}`, address: p.id, healthy: true, bannedUntil: 0, failures: 0, lastOk: 0, source: 'static', bytesFrom: 0 };
  }

  private usable(): Peer[] {
    return [...this.peers.values()].filter((p) => !this.banned.has(p.id) && !this.down.includes(p.id)).map((p) => this.peerObj(p));
  }

  context(): SwarmContext {
    const chunkSize = this.layout.chunkSize;
    const peerOf = (peer: { url: string }) => {
      const p = this.peers.get(peer.url.slice('mem://'.length));
      if (!p || this.down.includes(p.id)) throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
      return p;
    };
    return {
      selfId: this.selfId,
      config: { chunkConcurrency: 4, originConcurrency: 2, noProgressTimeoutMs: 60_000, leaseRunChunks: 4, leaseTtlMs: 1000, minPeerBytesPerSec: 1, banMs: 60_000 },
      log: createLogger(process.env.MEMSITE_LOG ? 'debug' : 'error', process.env.MEMSITE_LOG ? (l: string) => console.log(this.clock.now() % 1_000_000, l) : () => {}),
      clock: this.clock,
      timing: DEFAULT_DOWNLOAD_TIMING,
      store: this.store,
      table: Object.assign(this.table, {
        usable: () => this.usable(),
        get: (id: string) => { const p = this.peers.get(id); return p ? this.peerObj(p) : undefined; },
        isBanned: (p: Peer) => this.banned.has(p.id),
        ban: (id: string, _ms: number, reason: string) => { this.banned.set(id, reason); this.table.emit('ban', { id }); },
        markDown: (id: string) => {
          this.down.push(id);
          this.coordinatorOrder = this.coordinatorOrder.filter((c) => c !== id);
          this.table.emit('leave', { id });
        },
        memberIds: () => [this.selfId, ...this.usable().map((p) => p.id)],
      }) as unknown as SwarmContext['table'],
      client: {
        have: async (peer, _blob, chunks, wait, signal): Promise<HaveMap | undefined> => {
          const p = peerOf(peer);
          if (wait !== undefined && wait >= p.seq) {
            await new Promise<void>((resolve) => {
              const done = () => { p.changed.off('change', done); signal?.removeEventListener('abort', done); resolve(); };
              p.changed.on('change', done);
              signal?.addEventListener('abort', done);
            });
            signal?.throwIfAborted();
          }
          const pack = (on: (i: number) => boolean) => packBits(chunks, on);
          const leasing = p.leasing?.size ? { leasing: pack((i) => p.leasing!.has(i)) } : {};
          return { seq: p.seq, chunks, complete: p.have.every(Boolean), bitmap: pack((i) => !!p.have[i]), ...leasing };
        },
        range: async (peer, _blob, start, end, into) => {
          const p = peerOf(peer);
          p.ranges++;
          const i = Math.floor(start / chunkSize);
          if (!p.have[i] || p.lacks) throw new ShoalError('peer-lacks', `${p.id} does not hold chunk ${i}`);
          this.data.copy(into, 0, start, end + 1);
          if (p.lies?.has(i)) into[into.length >> 1]! ^= 0x01;
        },
        lease: async (peer, req: LeaseRequest): Promise<LeaseResponse> => {
          const p = peerOf(peer);
          if (p.answer) return p.answer(req);
          if (p.leaseFails || !p.coordinator) throw new ShoalError('peer-refused', `${p.id}: lease request refused`);
          return p.coordinator.handle(req, req.chunks);
        },
      },
      origin: {
        ignoresRange: () => false,
        fetchRange: async (_url, start, end, onData) => {
          this.originRequests.push([start, end]);
          if (this.originDown) throw new ShoalError('origin-error', 'origin down');
          for (let pos = start; pos <= end; pos += 64 << 10) {
            const piece = this.data.subarray(pos, Math.min(end + 1, pos + (64 << 10)));
            this.originBytes += piece.length;
            await onData(piece);
          }
        },
      },
      coordinator: this.own,
      stats: { stored: () => {}, verifyFailure: () => { this.verifyFailures++; }, distrusted: () => { this.distrusted++; } },
      buffers: new BufferPool(8),
      rankFor: () => this.coordinatorOrder.filter((id) => id === this.selfId || this.peers.has(id)),
      board: this.board,
      originAllowed: () => true,
    };
  }

  async download(): Promise<{ d: BlobDownload; blob: Blob }> {
    const blob = await this.store.ensure(this.layout);
    return { d: new BlobDownload(this.context(), blob, ['http://origin.invalid/blob']), blob };
  }
}
