/**
 * The lease coordinator of the blobs for which this daemon ranks first by HRW.
 * Each missing chunk is granted to exactly one leaseholder, who fetches it from
 * the origin; everyone else is told who holds it and fetches from that peer.
 * Leases expire unless renewed; a dead holder's chunks are granted again.
 */
import type { Clock } from '../common/clock.js';
import { MAX_LEASE_LIST, type LeaseRequest, type LeaseResponse } from '../peers/wire.js';

/** Done records outlive a lease by this many TTLs; then holders are known from have-maps alone. */
const DONE_TTLS = 30;
const MAX_BLOBS = 256;
const MAX_RECORDS = 1 << 16;
const MAX_RECORDS_PER_PEER = 1 << 13;

export interface CoordinatorOptions {
  selfId: string;
  /** A lease not renewed for this long lapses. */
  ttlMs: number;
  clock: Clock;
  /** Whether a peer is alive (a dead holder's leases are granted again). */
  isLive: (peerId: string) => boolean;
  /** Whether we rank first for the blob in our own view of the members. */
  ranksFirst?: (blob: string) => boolean;
  /** Whether `peerId`, which just left, ranked first for the blob (so we may be taking over). */
  wasCoordinator?: (blob: string, peerId: string) => boolean;
}

interface Lease {
  holder: string;
  expires: number;
  /** The holder reported the chunk as stored: it stays the place to fetch it. */
  done: boolean;
}

export class LeaseCoordinator {
  private leases = new Map<string, Map<number, Lease>>();
  /** Until then, blobs we have no state for only take renewals (we may have just inherited them). */
  private graceUntil = 0;
  /** Running totals (chunks), read by the metrics. */
  granted = 0;
  expired = 0;

  private selfId: string;
  private ttlMs: number;
  private clock: Clock;
  private isLive: (peerId: string) => boolean;
  private ranksFirst: (blob: string) => boolean;
  private wasCoordinator: (blob: string, peerId: string) => boolean;
  /** Members that left within the last TTL, and when that grace ends. */
  private departed = new Map<string, number>();

  constructor(o: CoordinatorOptions) {
    this.selfId = o.selfId;
    this.ttlMs = o.ttlMs;
    this.clock = o.clock;
    this.isLive = o.isLive;
    this.ranksFirst = o.ranksFirst ?? (() => true);
    this.wasCoordinator = o.wasCoordinator ?? (() => true);
  }

  /**
   * A member left: its coordinated blobs may move to us, so hear renewals before
   * granting. One TTL covers a holder's renewal interval (TTL/3) even if its first
   * renewal still went to the dead coordinator.
   */
  memberLeft(peerId: string) {
    const now = this.clock.now();
    for (const [id, until] of this.departed) if (until <= now) this.departed.delete(id);
    this.departed.set(peerId, now + this.ttlMs);
  }

  /**
   * Until when a blob we have no state for only takes renewals: a member that
   * left recently ranked first for it, so its leaseholders may now come to us.
   * Churn among members that did not coordinate the blob costs it nothing.
   */
  private graceFor(blob: string, now: number): number {
    let until = this.graceUntil;
    for (const [id, end] of this.departed) if (end > now && end > until && this.wasCoordinator(blob, id)) until = end;
    return until;
  }

  private stopping = false;

  /** Shutting down: no new grants; askers retry (with the next coordinator once we are gone). */
  stopGranting() {
    this.stopping = true;
  }

  /** Forget a peer's leases at once (it left or was banned). */
  dropHolder(peerId: string) {
    for (const m of this.leases.values()) for (const [c, l] of m) if (l.holder === peerId) this.unset(m, c);
  }

  handle(req: LeaseRequest, chunkCount: number): LeaseResponse {
    const now = this.clock.now();
    const known = this.leases.has(req.blob);
    let m = this.leases.get(req.blob);
    if (!m) { m = new Map(); this.leases.set(req.blob, m); }
    else { this.leases.delete(req.blob); this.leases.set(req.blob, m); } // most recently used last
    if (!known) this.bound(now);
    const valid = (c: unknown): c is number => Number.isSafeInteger(c) && (c as number) >= 0 && (c as number) < chunkCount;
    // A holder hands back a lease it will not fetch, or a chunk it no longer holds (dropped at rest).
    for (const c of (req.release ?? []).filter(valid)) if (m.get(c)?.holder === req.peer) this.unset(m, c);
    // A done record lets us name a holder; past DONE_TTLS lease TTLs have-maps say as much.
    for (const c of (req.done ?? []).filter(valid)) this.put(m, c, { holder: req.peer, expires: now + DONE_TTLS * this.ttlMs, done: true });
    const granted: number[] = [];
    for (const c of (req.renew ?? []).filter(valid)) {
      const l = m.get(c);
      if ((!l || l.holder === req.peer || this.stale(l, now)) && this.put(m, c, { holder: req.peer, expires: now + this.ttlMs, done: false })) granted.push(c);
    }
    const held: Record<string, string> = {};
    // New to this blob and either a member just left, or someone asks us although by our own
    // view another member ranks first: the requester saw that coordinator die before we did.
    // Either way we are taking over, so hear the leaseholders' renewals before granting.
    let graceUntil = known ? 0 : this.graceFor(req.blob, now);
    if (!known && !this.ranksFirst(req.blob) && now >= graceUntil) graceUntil = this.graceUntil = now + this.ttlMs;
    const inGrace = this.stopping || (!known && now < graceUntil);
    // One ranged GET per grant, so a run; an origin that ignores Range is read once, whole.
    const max = Math.max(0, Math.min(req.max ?? 8, req.whole ? MAX_LEASE_LIST : 64));
    let grants = 0;
    let last = -2;
    for (const c of (req.want ?? []).slice(0, MAX_LEASE_LIST).filter(valid)) {
      const l = m.get(c);
      // A holder that wants its own chunk again no longer has it (dropped at rest, evicted,
      // restarted): its record goes, and the chunk is granted anew.
      if (l && !this.stale(l, now) && l.holder !== req.peer) {
        held[c] = l.holder;
        continue;
      }
      if (l && l.holder === req.peer && !this.stale(l, now) && !l.done) continue; // its own run in flight
      if (l && !l.done) this.expired++;
      if (l) this.unset(m, c);
      // Grant one contiguous run per request so the holder can fetch it as one range.
      if (inGrace || grants >= max || (grants > 0 && !req.whole && c !== last + 1)) continue;
      if (!this.put(m, c, { holder: req.peer, expires: now + this.ttlMs, done: false })) break;
      granted.push(c);
      grants++;
      last = c;
      this.granted++;
    }
    return { coordinator: this.selfId, granted, held, ...(inGrace ? { retryMs: Math.max(50, graceUntil - now) } : {}) };
  }

  /** Records held per peer, and in all: a flood of lease requests cannot grow them without bound. */
  private perPeer = new Map<string, number>();
  private records = 0;

  /** Adds or replaces a record; false (nothing stored) when its holder is at its cap. */
  private put(m: Map<number, Lease>, c: number, l: Lease): boolean {
    const old = m.get(c);
    if (old) this.unset(m, c);
    if ((this.perPeer.get(l.holder) ?? 0) >= MAX_RECORDS_PER_PEER) return false;
    m.set(c, l);
    this.perPeer.set(l.holder, (this.perPeer.get(l.holder) ?? 0) + 1);
    this.records++;
    return true;
  }

  private unset(m: Map<number, Lease>, c: number) {
    const l = m.get(c);
    if (!l) return;
    m.delete(c);
    const n = (this.perPeer.get(l.holder) ?? 1) - 1;
    if (n <= 0) this.perPeer.delete(l.holder);
    else this.perPeer.set(l.holder, n);
    this.records--;
  }

  private lastSweep = 0;

  /**
   * At a new blob: past half the caps, drop lapsed records and empty blobs (at
   * most once a TTL); past the caps, the least recently used blobs go whole.
   */
  private bound(now: number) {
    if ((this.leases.size > MAX_BLOBS / 2 || this.records > MAX_RECORDS / 2) && now - this.lastSweep > this.ttlMs) {
      this.lastSweep = now;
      for (const [b, m] of this.leases) {
        for (const [c, l] of m) if (l.expires < now) this.unset(m, c);
        if (!m.size) this.leases.delete(b);
      }
    }
    for (const [b, m] of this.leases) {
      if (this.leases.size <= MAX_BLOBS && this.records <= MAX_RECORDS) break;
      for (const c of [...m.keys()]) this.unset(m, c);
      this.leases.delete(b);
    }
  }

  /** Records held now (for tests and status). */
  get size(): { blobs: number; records: number } {
    return { blobs: this.leases.size, records: this.records };
  }

  private stale(l: Lease, now: number) {
    return !this.isLive(l.holder) || l.expires < now;
  }

  /** Number of chunks under an active lease, per blob (for status pages). */
  activeLeases(): Record<string, number> {
    const now = this.clock.now();
    const out: Record<string, number> = {};
    for (const [b, m] of this.leases) {
      const n = [...m.values()].filter((l) => !l.done && l.expires >= now).length;
      if (n) out[b] = n;
    }
    return out;
  }

  forget(blob: string) {
    const m = this.leases.get(blob);
    if (m) for (const c of [...m.keys()]) this.unset(m, c);
    this.leases.delete(blob);
  }
}
