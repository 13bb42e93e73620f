/**
 * Known peers and their health. Addresses come from staticPeers (and later
 * discovery); a peer is only used once its /v1/info answered with a site that
 * matches ours. Emits 'join' and 'leave' so coordinators can be recomputed.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../common/log.js';
import type { PeerClient } from './peer-client.js';
import type { PeerInfo } from './wire.js';

export interface Peer {
  id: string;
  url: string;
  address: string;
  healthy: boolean;
  bannedUntil: number;
  banReason?: string;
  info?: PeerInfo;
  failures: number;
  lastOk: number;
  source: 'static' | 'mdns';
  /** Verified bytes this daemon stored from the peer (dashboard: share of traffic). */
  bytesFrom: number;
}

interface AddressEntry {
  url: string;
  host: string;
  source: 'static' | 'mdns';
  /** The peer id last seen at this address: set once it answered (confirmed). */
  id?: string;
  /** For discovered addresses: the id the advertisement claimed (info must match) and when it lapses. */
  expectId?: string;
  /** When the advertised record lapses… */
  expiresAt?: number;
  /** …or, while it never answered, at the latest this. */
  unconfirmedUntil?: number;
  addedAt: number;
}

/** Discovered addresses that never answered: kept apart, few, and briefly, so a flood of fake records cannot crowd out real peers. */
const MAX_UNCONFIRMED = 64;
const UNCONFIRMED_TTL_MS = 30_000;

export class PeerTable extends EventEmitter {
  private byId = new Map<string, Peer>();
  private addresses = new Map<string, AddressEntry>();
  private timer: NodeJS.Timeout | undefined;
  private probing = false;
  readonly maxPeers: number;

  private probeMs: number;
  private banMs: number;
  /** Recent times each peer was marked down: a peer that keeps failing is banned, not retried forever. */
  private downs = new Map<string, number[]>();

  /** http, or https on a private site (TLS 1.3 with the site's PSK). */
  private scheme: 'http' | 'https';

  constructor(readonly selfId: string, readonly site: string, private client: PeerClient, private log: Logger, opts: { probeMs?: number; maxPeers?: number; banMs?: number; scheme?: 'http' | 'https' } = {}) {
    super();
    this.scheme = opts.scheme ?? 'http';
    this.maxPeers = opts.maxPeers ?? 256;
    this.probeMs = opts.probeMs ?? 1000;
    this.banMs = opts.banMs ?? 60_000;
  }

  /**
   * Adds (or refreshes) an address to probe. A discovered address counts as
   * unconfirmed until it answers: those are capped apart (the oldest goes
   * first) and lapse within UNCONFIRMED_TTL_MS. Returns false when full.
   */
  addAddress(host: string, port: number, source: 'static' | 'mdns' = 'static', opts: { expectId?: string; expiresAt?: number } = {}): boolean {
    const h = host.includes(':') ? `[${host}]` : host;
    const address = `${h}:${port}`;
    const now = Date.now();
    const known = this.addresses.get(address);
    if (known) {
      if (source === 'mdns' && known.source === 'mdns') Object.assign(known, opts);
      return true;
    }
    if (source === 'mdns') {
      const unconfirmed = [...this.addresses].filter(([, a]) => a.source === 'mdns' && !a.id);
      if (unconfirmed.length >= MAX_UNCONFIRMED) {
        const oldest = unconfirmed.reduce((x, y) => (y[1].addedAt < x[1].addedAt ? y : x));
        this.addresses.delete(oldest[0]);
      }
    }
    if (this.addresses.size >= this.maxPeers * 2) return false;
    this.addresses.set(address, { url: `${this.scheme}://${address}`, host, source, addedAt: now, ...(source === 'mdns' ? { unconfirmedUntil: now + UNCONFIRMED_TTL_MS } : {}), ...opts });
    return true;
  }

  /**
   * An mDNS goodbye for `id` arrived from `from`. Anyone on the LAN can send
   * one, so it counts only from the address the peer is known at, and even
   * then the peer is probed before it is forgotten: one that still answers stays.
   */
  async goodbye(id: string, from: string): Promise<'forgotten' | 'alive' | 'ignored'> {
    const p = this.byId.get(id);
    const entries = [...this.addresses].filter(([, a]) => a.source === 'mdns' && (a.expectId === id || a.id === id));
    if (!p) {
      for (const [addr, a] of entries) if (a.host === from) this.addresses.delete(addr);
      return entries.some(([, a]) => a.host === from) ? 'forgotten' : 'ignored';
    }
    const knownAt = p.address.slice(0, p.address.lastIndexOf(':')).replace(/^\[|\]$/g, '');
    if (knownAt !== from || !entries.some(([, a]) => a.host === from)) {
      this.log('debug', 'ignoring an mDNS goodbye from another address', { peer: id, from });
      return 'ignored';
    }
    try {
      const info = await this.client.info({ url: p.url }, 1000);
      if (info.peerId === id) return 'alive';
    } catch { /* gone */ }
    this.forgetMdns(id, 'mDNS goodbye');
    return 'forgotten';
  }

  /** Whether a discovered peer is already known at that address (refreshes do not count against rate limits). */
  knowsMdns(id: string, host: string, port: number): boolean {
    return this.addresses.get(`${host}:${port}`)?.expectId === id;
  }

  /** A discovered peer said goodbye (or its record lapsed): forget its address, stop using it at once. */
  forgetMdns(id: string, reason: string) {
    for (const [addr, a] of this.addresses) if (a.source === 'mdns' && a.expectId === id) this.addresses.delete(addr);
    this.markDown(id, reason, false);
  }

  start() {
    const tick = async () => {
      await this.probeAll();
      this.timer = setTimeout(tick, this.probeMs);
      this.timer.unref();
    };
    void tick();
  }

  stop() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Probes every address once; resolves when all answered or failed. */
  async probeAll(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    const now = Date.now();
    for (const [addr, a] of this.addresses) {
      if (a.source === 'mdns' && ((a.expiresAt !== undefined && a.expiresAt < now) || (!a.id && a.unconfirmedUntil !== undefined && a.unconfirmedUntil < now))) {
        this.addresses.delete(addr);
        if (a.expectId) this.markDown(a.expectId, 'mDNS record expired', false);
      }
    }
    try {
      await Promise.all([...this.addresses.entries()].map(([address, a]) => this.probe(address, a)));
    } finally {
      this.probing = false;
    }
  }

  private async probe(address: string, a: AddressEntry) {
    try {
      const info = await this.client.info({ url: a.url }, Math.min(2000, this.probeMs * 2));
      if (info.peerId === this.selfId) { this.addresses.delete(address); return; } // ourselves
      if (info.site !== this.site) { this.log('debug', 'ignoring peer of another site', { address, site: info.site }); return; }
      // A discovered address must answer with the id it advertised.
      if (a.expectId && info.peerId !== a.expectId) { this.addresses.delete(address); return; }
      a.id = info.peerId;
      let p = this.byId.get(info.peerId);
      if (!p) {
        if (this.byId.size >= this.maxPeers) return;
        p = { id: info.peerId, url: a.url, address, healthy: false, bannedUntil: 0, failures: 0, lastOk: 0, source: a.source, bytesFrom: 0 };
        this.byId.set(p.id, p);
      }
      p.url = a.url;
      p.address = address;
      p.info = info;
      p.failures = 0;
      p.lastOk = Date.now();
      if (!p.healthy) {
        p.healthy = true;
        this.log('info', 'peer joined', { peer: p.id, address });
        this.emit('join', p);
      }
    } catch {
      const p = a.id ? this.byId.get(a.id) : undefined;
      if (p && p.healthy && ++p.failures >= 2) this.markDown(p.id, 'health check failed');
    }
  }

  /** A request to the peer failed at the connection level: stop using it until a probe succeeds. */
  markDown(id: string, reason: string, countsAsFailure = true) {
    const p = this.byId.get(id);
    if (!p || !p.healthy) return;
    p.healthy = false;
    this.log('info', 'peer left', { peer: id, reason });
    this.emit('leave', p);
    if (!countsAsFailure) return;
    const now = Date.now();
    const recent = (this.downs.get(id) ?? []).filter((t) => now - t < this.banMs);
    recent.push(now);
    this.downs.set(id, recent);
    // Answers its health check, then fails real requests: a broken or lying peer.
    if (recent.length >= 3) this.ban(id, this.banMs, `unreliable: failed ${recent.length} times, last: ${reason}`);
  }

  ban(id: string, ms: number, reason: string) {
    const p = this.byId.get(id);
    if (!p) return;
    p.bannedUntil = Date.now() + ms;
    p.banReason = reason;
    this.log('warn', 'peer banned', { peer: id, reason, seconds: Math.round(ms / 1000) });
    this.emit('ban', p);
  }

  get(id: string): Peer | undefined {
    return this.byId.get(id);
  }

  isBanned(p: Peer) {
    return p.bannedUntil > Date.now();
  }

  /** Healthy peers (banned ones included: they still count for coordination). */
  live(): Peer[] {
    return [...this.byId.values()].filter((p) => p.healthy);
  }

  /** Healthy, unbanned peers: where bytes may come from. */
  usable(): Peer[] {
    return this.live().filter((p) => !this.isBanned(p));
  }

  /** Ids that take part in HRW coordination: us and every usable peer. */
  /**
   * Ids that take part in HRW coordination: us and every healthy peer, banned
   * ones included. A ban is this daemon's own verdict; were it to change the
   * ranking, members that banned a peer and members that did not would pick
   * different coordinators and grant the same chunks. Downloads skip only a
   * coordinator that proved unreliable at coordinating (swarm/downloader.ts).
   */
  memberIds(): string[] {
    return [this.selfId, ...this.live().map((p) => p.id)];
  }

  all(): Peer[] {
    return [...this.byId.values()];
  }
}
