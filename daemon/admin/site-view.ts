/**
 * The whole site at a glance, on any member's dashboard, with no central
 * server: each healthy peer is asked over the peer protocol for its last 24 h
 * of savings (the answer `shoal stats` sums). Asked only while a page is
 * watching, at most once per refresh period, every peer at once and bounded
 * by the peer client's timeout; a peer's figures are its own claim, shown as such.
 */
import type { Clock } from '../common/clock.js';
import type { PeerClient } from '../peers/peer-client.js';
import type { PeerTable } from '../peers/peer-table.js';
import { SOURCES, type SavingsLog, type SavingsSource, type SavingsTotals } from './savings.js';

export type SourceSums = Record<SavingsSource, number> & { delivered: number };

export interface SiteMember {
  peerId: string;
  self: boolean;
  address?: string;
  /** The member's last 24 h, over every kind; absent when it did not answer. */
  totals?: SourceSums;
  error?: string;
}

export interface SiteSummary {
  /** When the peers were last asked (ms); 0 before the first round. */
  at: number;
  members: SiteMember[];
  /** The members that answered, this daemon included. */
  totals: SourceSums;
}

const emptySums = (): SourceSums => ({ origin: 0, peer: 0, local: 0, unshared: 0, delivered: 0 });

export function sumSources(t: SavingsTotals): SourceSums {
  const out = emptySums();
  for (const row of Object.values(t)) for (const s of SOURCES) { out[s] += row[s]; out.delivered += row[s]; }
  return out;
}

const DAY = 86400_000;

export class SiteView {
  private last: Map<string, SiteMember> = new Map();
  private at = 0;
  private round: Promise<void> | undefined;

  constructor(private d: {
    selfId: string;
    table: Pick<PeerTable, 'usable'>;
    client: Pick<PeerClient, 'stats'>;
    savings: Pick<SavingsLog, 'since'>;
    clock: Pick<Clock, 'now'>;
    refreshMs?: number;
  }) {}

  /** The figures as of the last round; starts a new round in the background when they are older than the refresh period. */
  summary(): SiteSummary {
    const now = this.d.clock.now();
    if (!this.round && now - this.at >= (this.d.refreshMs ?? 10_000)) this.round = this.refresh().finally(() => { this.round = undefined; });
    const self: SiteMember = { peerId: this.d.selfId, self: true, totals: sumSources(this.d.savings.since(now - DAY)) };
    const members = [self, ...this.last.values()];
    const totals = emptySums();
    for (const m of members) if (m.totals) for (const k of Object.keys(totals) as Array<keyof SourceSums>) totals[k] += m.totals[k];
    return { at: this.at, members, totals };
  }

  /** One round: every usable peer at once; a member that left the table leaves the view. */
  async refresh(): Promise<void> {
    const peers = this.d.table.usable();
    const since = this.d.clock.now() - DAY;
    const answers = await Promise.all(peers.map(async (p): Promise<SiteMember> => {
      try {
        return { peerId: p.id, self: false, address: p.address, totals: sumSources(await this.d.client.stats(p, since)) };
      } catch (e) {
        return { peerId: p.id, self: false, address: p.address, error: (e as Error).message.slice(0, 200) };
      }
    }));
    this.last = new Map(answers.map((a) => [a.peerId, a]));
    this.at = this.d.clock.now();
  }
}
