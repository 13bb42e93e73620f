/**
 * Downloads one blob from the site: chunks some peer holds come from peers,
 * rarest first, spread over holders; chunks nobody holds are leased from the
 * blob's coordinator and fetched from the origin by exactly one leaseholder.
 * Every chunk goes through Blob.writeChunk, which checks it against the signed
 * hash before it is stored, so a bad peer can cost time but never correctness.
 */
import { EventEmitter } from 'node:events';
import { ShoalError, isShoalError, peerVerdict } from '../errors.js';
import type { Blob } from '../store/blob.js';
import { ChunkAssembler } from '../store/chunk-assembler.js';
import { planChunks } from './chunk-picker.js';
import { MAX_LEASE_LIST, unpackBits, type LeaseRequest, type LeaseResponse } from '../peers/wire.js';
import type { Peer } from '../peers/peer-table.js';
import type { SwarmContext } from './swarm.js';
import { checkGrant } from './grant-check.js';
import type { Timer } from '../common/clock.js';
import type { Kind } from '../frontends/content.js';

/** The download loop's timing, from the swarm (tests shorten it on a fake clock). */
export interface DownloadTiming {
  /** Longest the loop sleeps without news before it plans again. */
  tickMs: number;
  /** Longest to wait for every peer's have-map before leasing from the origin. */
  settleMs: number;
  /** Pause before asking a peer that lacks the blob (or failed) again. */
  pollRetryMs: number;
  /** Pause after a lease answer that granted nothing. */
  leaseRetryMs: number;
  /** Cap of the back-off after failed origin runs. */
  originBackoffMaxMs: number;
  /** How long a transfer in flight may take to finish when the daemon drains. */
  drainPollMs: number;
  /** Have-map polls to one peer at most this often, however fast it answers. */
  pollMinMs: number;
  /** No chunk stored for this long while chunks are missing: the download says it is stalled, and why. */
  stallMs: number;
}

export const DEFAULT_DOWNLOAD_TIMING: DownloadTiming = {
  tickMs: 250, settleMs: 2000, pollRetryMs: 300, leaseRetryMs: 300, originBackoffMaxMs: 5000, drainPollMs: 50, pollMinMs: 100, stallMs: 5000,
};

/** Every index from the first to the last of ascending chunk indices. */
function spanOf(chunks: number[]): number[] {
  const out: number[] = [];
  for (let c = chunks[0] ?? 0; c <= (chunks[chunks.length - 1] ?? -1); c++) out.push(c);
  return out;
}

/** The leading ascending run of sorted chunk indices (one origin range). */
function contiguousPrefix(chunks: number[]): number[] {
  const out: number[] = [];
  for (const c of chunks) {
    if (out.length && c !== out[out.length - 1]! + 1) break;
    out.push(c);
  }
  return out;
}

export const SOURCE = { none: 0, cached: 1, origin: 2, peer: 3 } as const;

export interface DownloadProgress {
  blob: string;
  size: number;
  chunks: number;
  held: number;
  bytes: { origin: number; peer: number };
  state: 'running' | 'done' | 'failed';
  error?: { code: string; message: string };
  peers: number;
  coordinator: string | undefined;
  /** Why the download is not progressing although it could: waiting for an origin window. */
  waiting?: 'origin-window';
  /** Nothing arrived for a while although chunks are missing: why, as far as this daemon can tell. */
  stalled?: Stall;
}

export type StallReason = 'origin-window' | 'origin-failing' | 'origin-slow' | 'origin-elsewhere' | 'no-grant' | 'no-source' | 'peers-slow';
export interface Stall { reason: StallReason; message: string; forMs: number }

const STALL_TEXT: Record<StallReason, string> = {
  'origin-window': 'waiting for an origin window (originWindows)',
  'origin-failing': 'the origin fails; retrying with back-off',
  'origin-slow': 'the origin sends nothing',
  'origin-elsewhere': 'waiting for the member fetching the missing chunks from the origin',
  'no-grant': 'the coordinator grants no origin lease',
  'no-source': 'no source: no peer holds the missing chunks and there is no origin URL',
  'peers-slow': 'the peers holding the missing chunks are busy or slow',
};

export class BlobDownload extends EventEmitter {
  readonly bytes = { origin: 0, peer: 0 };
  /** Where each chunk came from in this download (for the dashboard's chunk map). */
  readonly source: Uint8Array;
  state: 'running' | 'done' | 'failed' = 'running';
  error: ShoalError | undefined;
  readonly done: Promise<void>;

  /** Chunks being received now. */
  private inflight = new Set<number>();
  private perPeer = new Map<string, number>();
  private peerHave = new Map<string, Uint8Array>();
  /** Peers that hold part of this blob: other downloaders, to spread picks against. */
  private partial = new Set<string>();
  /** Peers whose have-map (or "don't have it") we heard at least once. */
  private heard = new Set<string>();
  private readonly startedAt: number;
  private pollers = new Map<string, AbortController>();
  private originRuns = 0;
  private nextLeaseAt = 0;
  private wakeUp: (() => void) | undefined;
  private readonly abort = new AbortController();
  private originFailures = 0;
  private lastProgress: number;
  private leasing = false;
  private fatal: ShoalError | undefined;
  private draining = false;
  /** An agent asked to use the origin now, whatever the origin windows say. */
  override = false;
  waiting: 'origin-window' | undefined;
  /** Set by the planner: why nothing arrives (see Stall); since when the origin window is shut. */
  private stall: { reason: StallReason; since: number } | undefined;
  private windowSince: number | undefined;

  /** A learned blob: which peer supplied each chunk (undefined: the origin, or held before). */
  private suppliedBy: (string | undefined)[] | undefined;

  constructor(private ctx: SwarmContext, readonly blob: Blob, private urls: string[], readonly kind: Kind = 'native') {
    super();
    if (blob.unproven) this.suppliedBy = new Array<string | undefined>(blob.chunkCount);
    this.startedAt = this.lastProgress = ctx.clock.now();
    this.source = new Uint8Array(blob.chunkCount);
    for (let i = 0; i < blob.chunkCount; i++) if (blob.have[i]) this.source[i] = SOURCE.cached;
    this.done = this.run();
    this.done.catch(() => {});
  }

  /** Starts nothing new; resolves when transfers in flight are done or `ms` passed. */
  async drain(ms: number): Promise<void> {
    this.draining = true;
    const until = this.ctx.clock.now() + ms;
    while (this.inflight.size > 0 && this.ctx.clock.now() < until && this.state === 'running') await this.ctx.clock.sleep(this.ctx.timing.drainPollMs);
  }

  cancel(reason = 'cancelled') {
    this.abort.abort(new ShoalError('aborted', reason));
    // The loop's own tick timer is unreferenced: wake it, or a stopping daemon could find
    // its event loop empty before the download has ended.
    this.wake();
  }

  progress(): DownloadProgress {
    const stalled = this.stalled();
    return {
      blob: this.blob.sha256, size: this.blob.size, chunks: this.blob.chunkCount, held: this.blob.heldCount,
      bytes: { ...this.bytes }, state: this.state,
      ...(this.error ? { error: { code: this.error.code, message: this.error.message } } : {}),
      peers: this.peerHave.size, coordinator: this.coordinator(),
      ...(this.waiting ? { waiting: this.waiting } : {}),
      ...(stalled ? { stalled } : {}),
    };
  }

  /** Why nothing has arrived for a while, while the download runs (cheap: no coordinator ranking, unlike progress()). */
  stalled(): Stall | undefined {
    if (!this.stall || this.state !== 'running') return undefined;
    return { reason: this.stall.reason, message: STALL_TEXT[this.stall.reason], forMs: Math.max(0, this.ctx.clock.now() - this.stall.since) };
  }

  private wake = () => {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  };

  /**
   * The coordinator this download asks: the first member in HRW order that has
   * not proven unreliable for this blob; with none left, ourselves (we then
   * lease from our own coordinator and fetch from the origin directly).
   */
  private coordinator(): string {
    // A ban (say, for stalled uploads on a loaded machine) is this daemon's own verdict on a
    // peer's bytes; skipping a banned coordinator would split the site's choice between
    // members that banned it and members that did not. Only a coordinator that proved
    // unreliable at coordinating this blob is skipped.
    return this.ctx.rankFor(this.blob.sha256).find((id) => id === this.ctx.selfId || !this.distrusted.has(id)) ?? this.ctx.selfId;
  }

  /** Coordinators that answered wrongly, granted twice, or let us starve: skipped for this blob. */
  private distrusted = new Set<string>();
  /** Since when lease answers have given us nothing to do (no grant, no progress). */
  private starvingSince: number | undefined;

  private distrust(coord: string, reason: string, ban: boolean) {
    if (coord === this.ctx.selfId || this.distrusted.has(coord)) return;
    this.distrusted.add(coord);
    this.starvingSince = undefined;
    this.ctx.stats.distrusted();
    this.ctx.log('warn', 'coordinator unreliable for this blob: asking the next', { blob: this.blob.sha256.slice(0, 12), coordinator: coord, reason, next: this.coordinator() });
    if (ban) this.ctx.table.ban(coord, this.ctx.config.banMs, `coordinator: ${reason}`);
    this.nextLeaseAt = 0;
    this.wake();
  }

  /** Peers that answered "busy" (503) or stalled, not asked again until then. */
  private busyUntil = new Map<string, number>();
  /** Stalls per peer in this download. */
  private stalls = new Map<string, number>();
  /** Our origin leases in flight, by chunk: who granted it, and how to stop its run (a double grant another member keeps). */
  private originLeases = new Map<number, { grantedBy: string; yieldRun: AbortController }>();
  /** Origin leases other members show in their have-maps: chunk → first seen, per peer. */
  private peerLeasing = new Map<string, Map<number, number>>();
  /** When each peer's held count last grew (a visible lease without progress stops counting). */
  private peerGrowth = new Map<string, { held: number; at: number }>();

  /** Another member visibly fetches chunk c from the origin now (and is getting somewhere). */
  private leasedElsewhere(c: number, now: number): boolean {
    const stale = 2 * this.ctx.config.leaseTtlMs;
    for (const [id, chunks] of this.peerLeasing) {
      const since = chunks.get(c);
      if (since === undefined) continue;
      const grew = this.peerGrowth.get(id)?.at ?? since;
      if (now - since <= stale || now - grew <= stale) return true;
    }
    return false;
  }

  private async run(): Promise<void> {
    const release = this.ctx.store.hold(this.blob.sha256);
    const onJoin = (p: Peer) => { this.startPoller(p); this.wake(); };
    const onLeave = (p: Peer) => { this.stopPoller(p.id); this.wake(); };
    this.ctx.table.on('join', onJoin);
    this.ctx.table.on('leave', onLeave);
    this.ctx.table.on('ban', onLeave);
    const onChange = () => this.wake();
    this.blob.on('change', onChange);
    try {
      // Chunks restored from disk are hashed once before this download counts them as held:
      // one that changed since is dropped here and fetched again below.
      await this.blob.confirmHeld();
      for (let i = 0; i < this.blob.chunkCount; i++) if (!this.blob.have[i]) this.source[i] = SOURCE.none;
      for (const p of this.ctx.table.usable()) this.startPoller(p);
      for (;;) {
        while (this.blob.heldCount < this.blob.chunkCount) {
          this.abort.signal.throwIfAborted();
          if (this.fatal) throw this.fatal;
          this.schedule();
          await new Promise<void>((resolve) => {
            const t = this.ctx.clock.setTimeout(() => { this.wakeUp = undefined; resolve(); }, this.ctx.timing.tickMs);
            t.unref?.();
            this.wakeUp = () => { this.ctx.clock.clearTimeout(t); resolve(); };
          });
          // Nothing in flight and nothing stored for that long. A transfer in flight is bounded by
          // its own checks: a peer's by the stall check, an origin body by the rate floor.
          if (this.ctx.clock.now() - this.lastProgress > this.ctx.config.noProgressTimeoutMs && this.inflight.size === 0) {
            throw new ShoalError('unavailable', `no source for blob ${this.blob.sha256.slice(0, 12)}: no peer holds the missing chunks and the origin failed or is unset`);
          }
        }
        this.stall = undefined;
        if (!this.blob.unproven) break;
        // A learned blob: every chunk is in; the whole file must match its SHA-256 before it counts.
        await this.blob.whenAllDurable();
        if (await this.ctx.store.prove(this.blob)) break;
        if (this.abort.signal.aborted || this.blob.closed) continue;
        await this.blame();
      }
      await this.blob.whenComplete();
      this.state = 'done';
      this.emit('progress', this.progress());
    } catch (e) {
      this.state = 'failed';
      this.error = isShoalError(e) ? e : this.abort.signal.aborted ? new ShoalError('aborted', 'download cancelled') : new ShoalError('internal', (e as Error).message);
      this.emit('progress', this.progress());
      throw this.error;
    } finally {
      this.abort.abort(new ShoalError('aborted', 'download finished'));
      for (const c of this.pollers.values()) c.abort();
      this.ctx.table.off('join', onJoin);
      this.ctx.table.off('leave', onLeave);
      this.ctx.table.off('ban', onLeave);
      this.blob.off('change', onChange);
      release();
    }
  }

  // ---- planning ----

  private schedule() {
    if (this.draining) return;
    const usable = new Map(this.ctx.table.usable().map((p) => [p.id, p]));
    const now = this.ctx.clock.now();
    const have = new Map([...this.peerHave].filter(([id]) => usable.has(id)));
    // A busy holder still holds its chunks (they are not the origin's), it just takes no request now.
    const busy = new Set([...this.busyUntil].filter(([, until]) => until > now).map(([id]) => id));
    const partial = new Set([...this.partial].filter((id) => usable.has(id)));
    const { fromPeers, unheld } = planChunks({
      chunkCount: this.blob.chunkCount,
      skip: (i) => !!this.blob.have[i] || this.inflight.has(i),
      have,
      partial,
      load: this.perPeer,
      busy,
      concurrency: this.ctx.config.chunkConcurrency,
    });
    for (const { chunk, peer } of fromPeers) void this.fetchFromPeer(chunk, usable.get(peer)!);
    // Hear every peer's have-map before leasing: otherwise the first plan sees every
    // chunk as unheld and pulls from the origin what a peer already holds.
    const settled = [...usable.keys()].every((id) => this.heard.has(id)) || now - this.startedAt > this.ctx.timing.settleMs;
    const originOpen = this.override || this.ctx.originAllowed();
    this.waiting = unheld.length && !originOpen ? 'origin-window' : undefined;
    if (this.waiting) this.lastProgress = now; // waiting for a window is not a stall
    // No grant and no chunk from anyone for two lease TTLs while chunks are missing: the
    // coordinator (or the holders it names) is not getting us anywhere.
    // Chunks another member is visibly fetching from the origin are not ours to lease, whoever would grant them.
    const askable = unheld.filter((c) => !this.leasedElsewhere(c, now));
    if (!askable.length || this.originRuns > 0 || this.waiting) this.starvingSince = undefined;
    else if (this.starvingSince !== undefined && now - this.starvingSince > 2 * this.ctx.config.leaseTtlMs) {
      this.distrust(this.coordinator(), `no grant and no progress for ${2 * this.ctx.config.leaseTtlMs} ms`, false);
    }
    // One body at a time of an origin that ignores Range: each would re-read it from byte 0.
    const runs = this.wholeBody ? 1 : this.ctx.config.originConcurrency;
    if (originOpen && settled && askable.length && this.originRuns < runs && !this.leasing && now >= this.nextLeaseAt && this.urls.length) {
      void this.askLease(askable);
    }
    this.stall = this.stallOf(now, unheld.length, askable.length);
  }

  /** Why nothing has been stored for stallMs although chunks are missing, from what the planner knows. */
  private stallOf(now: number, unheld: number, askable: number): { reason: StallReason; since: number } | undefined {
    if (this.waiting) {
      this.windowSince ??= now;
      return { reason: 'origin-window', since: this.windowSince };
    }
    this.windowSince = undefined;
    if (now - this.lastProgress < this.ctx.timing.stallMs) return undefined;
    const reason: StallReason =
      this.originFailures > 0 ? 'origin-failing'
        : this.originRuns > 0 ? 'origin-slow'
          : unheld > 0 && !this.urls.length ? 'no-source'
            : unheld > 0 && !askable ? 'origin-elsewhere'
              : unheld > 0 ? 'no-grant'
                : 'peers-slow';
    return { reason, since: this.lastProgress };
  }

  private stored(i: number, bytes: number, from: 'origin' | 'peer', peerId?: string) {
    this.bytes[from] += bytes;
    if (this.suppliedBy) this.suppliedBy[i] = from === 'peer' ? peerId : undefined;
    this.source[i] = from === 'origin' ? SOURCE.origin : SOURCE.peer;
    this.ctx.stats.stored(from, bytes, peerId, this.kind);
    this.lastProgress = this.ctx.clock.now();
    this.starvingSince = undefined;
  }

  /** The chunk map for dashboards, at most `cells` long: per cell the state of its chunks. */
  chunkMap(cells = 2048): string {
    const n = this.blob.chunkCount;
    const per = Math.max(1, Math.ceil(n / cells));
    let out = '';
    for (let c = 0; c < n; c += per) {
      // A cell shows its least complete chunk: missing (0), then cached (1), origin (2), peer (3).
      let cell = 9;
      for (let i = c; i < Math.min(n, c + per); i++) cell = Math.min(cell, this.blob.have[i] ? Math.max(1, this.source[i]!) : 0);
      out += String(cell);
    }
    return out;
  }

  // ---- have-maps ----

  private startPoller(p: Peer) {
    if (this.pollers.has(p.id) || this.abort.signal.aborted) return;
    const ctl = new AbortController();
    this.pollers.set(p.id, ctl);
    const signal = AbortSignal.any([ctl.signal, this.abort.signal]);
    void (async () => {
      let seq: number | undefined;
      let idle = 0;
      while (!signal.aborted) {
        try {
          const asked = this.ctx.clock.now();
          const h = await this.ctx.client.have(p, this.blob.sha256, this.blob.chunkCount, seq, signal);
          this.heard.add(p.id);
          if (!h) {
            this.peerHave.delete(p.id);
            this.partial.delete(p.id);
            this.peerLeasing.delete(p.id);
            seq = undefined;
            await this.ctx.clock.sleep(this.ctx.timing.pollRetryMs, signal);
            continue;
          }
          const now = this.ctx.clock.now();
          const bits = unpackBits(h.bitmap, this.blob.chunkCount);
          let held = 0;
          for (const b of bits) held += b;
          const growth = this.peerGrowth.get(p.id);
          if (!growth || held > growth.held) this.peerGrowth.set(p.id, { held, at: now });
          this.peerHave.set(p.id, bits);
          const leasing = new Map<number, number>();
          if (h.leasing) {
            const was = this.peerLeasing.get(p.id);
            const lb = unpackBits(h.leasing, this.blob.chunkCount);
            for (let i = 0; i < lb.length; i++) if (lb[i] && !bits[i]) leasing.set(i, was?.get(i) ?? now);
          }
          this.peerLeasing.set(p.id, leasing);
          // It fetches from the origin a chunk we are fetching too: whoever granted ours granted it twice.
          // Both see it; the one with the smaller id keeps fetching, the other stops its run
          // (keeping the chunks already in) and hands the rest back: one copy, not two.
          for (const c of leasing.keys()) {
            const ours = this.originLeases.get(c);
            if (!ours) continue;
            this.distrust(ours.grantedBy, `granted chunk ${c}, which ${p.id} is leasing too`, false);
            if (p.id < this.ctx.selfId) ours.yieldRun.abort(new ShoalError('aborted', `${p.id} fetches chunk ${c} too`));
            break;
          }
          if (h.complete) this.partial.delete(p.id);
          else this.partial.add(p.id);
          // A long-poll answers when something changed. One that answers at once with nothing
          // new does not set the pace: wait out the rest of the interval, and after a run of
          // them the peer is banned (it would keep us in a busy loop).
          const early = now - asked < this.ctx.timing.pollMinMs;
          const news = seq === undefined || h.seq !== seq;
          idle = early && !news ? idle + 1 : 0;
          if (idle >= 20) {
            this.ctx.table.ban(p.id, this.ctx.config.banMs, 'answers have long-polls at once without news');
            break;
          }
          seq = h.seq;
          this.wake();
          if (early) await this.ctx.clock.sleep(this.ctx.timing.pollMinMs - (now - asked), signal);
        } catch {
          if (signal.aborted) break;
          seq = undefined;
          await this.ctx.clock.sleep(this.ctx.timing.pollRetryMs, signal).catch(() => {});
        }
      }
    })();
  }

  private stopPoller(id: string) {
    this.pollers.get(id)?.abort();
    this.pollers.delete(id);
    this.peerHave.delete(id);
    this.peerLeasing.delete(id);
    this.partial.delete(id);
  }

  // ---- peers ----

  private async fetchFromPeer(i: number, p: Peer) {
    this.inflight.add(i);
    this.perPeer.set(p.id, (this.perPeer.get(p.id) ?? 0) + 1);
    const { start, end } = this.blob.chunkRange(i);
    let lease: { buf: Buffer; release(): void } | undefined;
    try {
      lease = await this.ctx.buffers.acquire(end - start, this.abort.signal);
      // The throughput floor is for the peer as a whole: its upload (maybe rate-limited on purpose)
      // is shared by every request we have open to it.
      const floor = this.ctx.config.minPeerBytesPerSec / Math.max(1, this.perPeer.get(p.id) ?? 1);
      await this.ctx.client.range(p, this.blob.sha256, start, end - 1, lease.buf, this.abort.signal, floor);
      if ((await this.blob.writeChunk(i, lease.buf, false)) === 'stored') this.stored(i, lease.buf.length, 'peer', p.id);
    } catch (e) {
      if (this.abort.signal.aborted) return;
      const verdict = peerVerdict(e);
      if (verdict === 'backoff') {
        // At its upload limit, or stalled: leave it alone a moment and ask another holder; a
        // peer that stalls three times in one download is banned.
        const now = this.ctx.clock.now();
        this.busyUntil.set(p.id, now + (isShoalError(e, 'peer-stall') ? 4 : 1) * this.ctx.timing.leaseRetryMs);
        if (isShoalError(e, 'peer-stall')) {
          const n = (this.stalls.get(p.id) ?? 0) + 1;
          this.stalls.set(p.id, n);
          if (n >= 3) this.ctx.table.ban(p.id, this.ctx.config.banMs, `stalled ${n} times: ${(e as Error).message}`);
        }
        return;
      }
      const bits = this.peerHave.get(p.id);
      if (bits) bits[i] = 0; // don't ask this peer for it again until it says so anew
      if (isShoalError(e, 'chunk-mismatch')) this.ctx.stats.verifyFailure('peer');
      if (verdict === 'fatal') this.fatal = e as ShoalError;
      else if (verdict === 'ban') this.ctx.table.ban(p.id, this.ctx.config.banMs, `chunk ${i}: ${(e as Error).message}`);
      else if (verdict === 'down') this.ctx.table.markDown(p.id, (e as Error).message);
    } finally {
      lease?.release();
      this.inflight.delete(i);
      this.perPeer.set(p.id, (this.perPeer.get(p.id) ?? 1) - 1);
      this.wake();
    }
  }

  // ---- leases and the origin ----

  private async lease(req: Omit<LeaseRequest, 'blob' | 'peer' | 'chunks'>, signal: AbortSignal = this.abort.signal, coord = this.coordinator()): Promise<{ coord: string; full: LeaseRequest; res: LeaseResponse } | undefined> {
    const full: LeaseRequest = { ...req, blob: this.blob.sha256, peer: this.ctx.selfId, chunks: this.blob.chunkCount };
    if (coord === this.ctx.selfId) return { coord, full, res: this.ctx.coordinator.handle(full, this.blob.chunkCount) };
    const p = this.ctx.table.get(coord);
    if (!p) return undefined;
    try {
      return { coord, full, res: await this.ctx.client.lease(p, full, signal) };
    } catch (e) {
      if (!signal.aborted) this.ctx.table.markDown(coord, `lease request failed: ${(e as Error).message}`);
      return undefined;
    }
  }

  /** Whole-body grants handed back because the bytes before them cost more than they bring. */
  private wholeRefusals = 0;

  private prefixTooDear(run: number[]): boolean {
    // Another member visibly reads the body ahead of these chunks: its body passes over them and keeps them.
    for (const leasing of this.peerLeasing.values()) for (const c of leasing.keys()) if (c < run[0]!) return true;
    const bytes = run.reduce((n, c) => n + this.blob.chunkLength(c), 0);
    return this.wholeRefusals < 5 && this.blob.chunkRange(run[0]!).start >= bytes;
  }

  /** The first origin URL ignores Range: lease every missing chunk at once and read the body once. */
  private get wholeBody(): boolean {
    return this.urls.length > 0 && this.ctx.origin.ignoresRange(this.urls[0]!);
  }

  private async askLease(askable: number[]) {
    this.leasing = true;
    try {
      const whole = this.wholeBody;
      const want = (whole ? [...askable].sort((a, b) => a - b) : askable).slice(0, MAX_LEASE_LIST);
      // A fair share of what is left, when other members are fetching this blob too: each then
      // holds chunks only it can serve at first (a learned blob's rule), and serves them to the
      // rest, so no one member's uplink carries the whole blob to every other.
      const fetching = 1 + [...this.partial].filter((id) => this.peerHave.has(id)).length;
      const share = Math.max(1, Math.ceil(askable.length / fetching));
      const answer = await this.lease(whole ? { want, max: MAX_LEASE_LIST, whole } : { want, max: Math.min(this.ctx.config.leaseRunChunks, share) });
      this.nextLeaseAt = this.ctx.clock.now() + this.ctx.timing.leaseRetryMs;
      if (!answer) return;
      const { coord, full, res } = answer;
      const check = checkGrant(full, res, (id) => id === this.ctx.selfId || !!this.ctx.table.get(id));
      if (!check.ok) return this.distrust(coord, check.reason, true);
      if (res.retryMs !== undefined) this.nextLeaseAt = this.ctx.clock.now() + res.retryMs;
      else if (check.granted.length) this.nextLeaseAt = 0;
      const later = this.ctx.clock.now();
      if (check.granted.some((c) => this.leasedElsewhere(c, later))) {
        // It granted us what another member is fetching: it grants twice (or two members each
        // believe they coordinate). Hand the grant back and ask the next in order.
        void this.lease({ release: check.granted }, AbortSignal.timeout(2000), coord);
        return this.distrust(coord, 'granted a chunk another member is leasing', false);
      }
      const fresh = check.granted.filter((c) => !this.blob.have[c] && !this.inflight.has(c));
      const run = full.whole ? fresh : contiguousPrefix(fresh);
      if (full.whole && run.length && this.prefixTooDear(run)) {
        // Reading from byte 0 to these costs more than they bring: hand them back for a while,
        // another member's whole body passing over them keeps them (see originRun).
        void this.lease({ release: check.granted }, AbortSignal.timeout(2000), coord);
        this.nextLeaseAt = this.ctx.clock.now() + Math.min(this.ctx.timing.originBackoffMaxMs, this.ctx.timing.leaseRetryMs * 2 ** Math.min(4, this.wholeRefusals++));
        return;
      }
      const unused = check.granted.filter((c) => !run.includes(c));
      if (unused.length) void this.lease({ release: unused }, AbortSignal.timeout(2000), coord);
      if (run.length) {
        this.starvingSince = undefined;
        void this.originRun(run, coord, !!full.whole);
      } else {
        this.starvingSince ??= this.ctx.clock.now();
      }
    } finally {
      this.leasing = false;
      this.wake();
    }
  }

  private async originRun(chunks: number[], grantedBy: string, whole: boolean) {
    this.originRuns++;
    const yieldCtl = new AbortController();
    const runSignal = AbortSignal.any([this.abort.signal, yieldCtl.signal]);
    chunks.forEach((c) => { this.inflight.add(c); this.originLeases.set(c, { grantedBy, yieldRun: yieldCtl }); });
    this.ctx.board.add(this.blob.sha256, chunks);
    const remaining = new Set(chunks);
    const done: number[] = [];
    const renewOnce = async () => {
      const sent = done.splice(0);
      if (!(await this.lease({ renew: [...remaining], done: sent }))) {
        done.push(...sent);
        // The coordinator just failed: tell its successor at once, before it grants our chunks away.
        if (!this.abort.signal.aborted) this.ctx.clock.setTimeout(() => void renewOnce(), this.ctx.timing.leaseRetryMs / 3).unref?.();
      }
    };
    // Renewed three times a lease TTL, so one lost renewal never lets a lease lapse.
    const renewMs = Math.max(10, Math.floor(this.ctx.config.leaseTtlMs / 3));
    let renewTimer: Timer | undefined;
    let renewing = true;
    const renewLoop = () => {
      if (!renewing) return;
      renewTimer = this.ctx.clock.setTimeout(() => { void renewOnce(); renewLoop(); }, renewMs);
      renewTimer.unref?.();
    };
    renewLoop();
    let ok = false;
    let releaseBuf: (() => void) | undefined;
    try {
      const last = this.blob.chunkRange(chunks[chunks.length - 1]!).end - 1;
      const lease = await this.ctx.buffers.acquire(this.blob.chunkSize, this.abort.signal);
      releaseBuf = lease.release;
      // A body read whole brings every chunk between ours too: keep those no one here has or fetches.
      const span = whole ? spanOf(chunks).filter((c) => remaining.has(c) || (!this.blob.have[c] && !this.inflight.has(c))) : chunks;
      const assembler = new ChunkAssembler(this.blob, span, lease.buf, async (c, buf) => {
        if ((await this.blob.writeChunk(c, buf, true)) === 'stored') this.stored(c, buf.length, 'origin');
        this.lastProgress = this.ctx.clock.now();
        remaining.delete(c);
        done.push(c);
      }, (c) => !remaining.has(c) && (!!this.blob.have[c] || this.inflight.has(c)));
      let lastError: unknown;
      let noRange = false;
      for (const url of this.urls) {
        try {
          // Resumes (inside fetchRange, and with the next URL) start where the assembler stands: no byte twice.
          const from = assembler.restart();
          if (from > last) break;
          await this.ctx.origin.fetchRange(url, from, last, (b) => assembler.push(b), runSignal, { whole });
          ok = true;
          break;
        } catch (e) {
          lastError = e;
          if (runSignal.aborted) return; // cancelled, or yielding a double grant (the rest is released below)
          if (isShoalError(e, 'origin-no-range')) { noRange = true; break; } // asked again at once, whole
          if (isShoalError(e, 'chunk-mismatch')) {
            this.ctx.stats.verifyFailure('origin');
            assembler.dropPartial(); // the origin sent bad bytes for this chunk: drop it, try the next URL
          }
          if (isShoalError(e, 'no-space') || isShoalError(e, 'permission-denied')) { this.fatal = e as ShoalError; return; }
        }
      }
      this.ctx.log('debug', 'origin run', { blob: this.blob.sha256.slice(0, 12), chunks: `${chunks[0]}-${chunks[chunks.length - 1]}`, grantedBy, ok, stored: chunks.length - remaining.size });
      if (noRange) {
        this.nextLeaseAt = 0;
      } else if (!ok) {
        this.originFailures++;
        this.ctx.log('warn', 'origin fetch failed', { blob: this.blob.sha256.slice(0, 12), error: (lastError as Error)?.message });
        if (this.originFailures >= 5) this.fatal = isShoalError(lastError) ? lastError : new ShoalError('origin-error', String(lastError));
        this.nextLeaseAt = this.ctx.clock.now() + Math.min(this.ctx.timing.originBackoffMaxMs, this.ctx.timing.leaseRetryMs * 2 ** this.originFailures);
      } else {
        this.originFailures = 0;
      }
    } finally {
      releaseBuf?.();
      renewing = false;
      this.ctx.clock.clearTimeout(renewTimer);
      chunks.forEach((c) => { this.inflight.delete(c); this.originLeases.delete(c); });
      this.ctx.board.remove(this.blob.sha256, chunks);
      this.originRuns--;
      // Hand back what we did not fetch, also when cancelled (hence a fresh signal).
      void this.lease({ done, release: [...remaining] }, AbortSignal.timeout(2000));
      this.wake();
    }
  }

  // ---- the proof of a learned blob ----

  /**
   * The whole file does not match its SHA-256: some chunk is wrong, and a chunk's hash
   * was only ever its supplier's claim. Each peer's chunks, one peer at a time, are read
   * again from the origin (ranged) and compared; a peer whose bytes differ is banned
   * and its chunks replaced by the origin's. With no peer to blame, the origin's own
   * bytes do not match the hash: nothing is kept (blob-mismatch).
   */
  private async blame() {
    const byPeer = new Map<string, number[]>();
    this.suppliedBy!.forEach((id, c) => {
      if (id === undefined || !this.blob.have[c]) return;
      const list = byPeer.get(id);
      if (list) list.push(c);
      else byPeer.set(id, [c]);
    });
    const sha = this.blob.sha256.slice(0, 12);
    // Cheapest suspects first: whoever supplied the fewest chunks is read again first.
    for (const [id, chunks] of [...byPeer].sort((a, b) => a[1].length - b[1].length)) {
      const bad = await this.recheckFromOrigin(chunks);
      for (const c of chunks) this.suppliedBy![c] = undefined;
      if (!bad.length) continue;
      this.ctx.stats.verifyFailure('peer');
      this.ctx.table.ban(id, this.ctx.config.banMs, `supplied ${bad.length} chunk(s) of ${sha} that differ from the origin's bytes`);
      this.ctx.log('warn', 'a peer supplied false chunks of a content-addressed blob: banned, chunks replaced from the origin', { blob: sha, peer: id, chunks: bad.length });
      return;
    }
    await this.ctx.store.remove(this.blob.sha256).catch(() => {});
    throw new ShoalError('blob-mismatch', `blob ${sha}: the origin's bytes do not match the SHA-256 ${this.blob.sha256}; nothing was kept`);
  }

  /** Reads chunks from the origin and replaces those whose stored bytes differ; returns the replaced ones. */
  private async recheckFromOrigin(chunks: number[]): Promise<number[]> {
    const bad: number[] = [];
    const lease = await this.ctx.buffers.acquire(this.blob.chunkSize, this.abort.signal);
    try {
      for (const c of chunks) {
        const { start, end } = this.blob.chunkRange(c);
        const buf = lease.buf.subarray(0, end - start);
        let off = 0;
        let lastError: unknown;
        for (const url of this.urls) {
          try {
            off = 0;
            await this.ctx.origin.fetchRange(url, start, end - 1, (b) => { b.copy(buf, off); off += b.length; }, this.abort.signal);
            lastError = undefined;
            break;
          } catch (e) {
            lastError = e;
            if (this.abort.signal.aborted) throw e;
          }
        }
        if (lastError) throw isShoalError(lastError) ? lastError : new ShoalError('origin-error', String(lastError));
        this.bytes.origin += buf.length;
        if ((await this.ctx.store.hasher.digest(buf)) === this.blob.chunks[c]) continue;
        bad.push(c);
        await this.blob.drop([c], 'changed-on-disk');
        await this.blob.writeChunk(c, buf, true);
        this.source[c] = SOURCE.origin;
      }
    } finally {
      lease.release();
    }
    return bad;
  }
}
