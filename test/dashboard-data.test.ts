/** What the dashboard is fed, on a fake clock: the throughput history and the site view. */
import test from 'ava';
import { RateHistory } from '../daemon/admin/rate-history.js';
import { SiteView, sumSources } from '../daemon/admin/site-view.js';
import type { SavingsTotals } from '../daemon/admin/savings.js';
import { KINDS } from '../daemon/frontends/content.js';
import type { Peer } from '../daemon/peers/peer-table.js';
import { FakeClock } from './helpers/fake-clock.js';

test('rate history: per-second buckets, only complete seconds, idle seconds read zero', async (t) => {
  const clock = new FakeClock(1_000_000);
  const h = new RateHistory(clock, 10);
  h.add('origin', 100);
  h.add('origin', 50);
  h.add('peer', 7);
  t.deepEqual(h.window(3).origin, [0, 0, 0], 'the second still filling is not shown');
  await clock.advance(1000);
  h.add('upload', 9);
  let w = h.window(3);
  t.deepEqual(w.origin, [0, 0, 150]);
  t.deepEqual(w.peer, [0, 0, 7]);
  t.deepEqual(w.upload, [0, 0, 0]);
  t.is(w.start, 1_000_000 - 2000);
  await clock.advance(3000); // three idle seconds: zeroed as the ring rolls, not left over
  w = h.window(5);
  t.deepEqual(w.origin, [0, 150, 0, 0, 0]);
  t.deepEqual(w.upload, [0, 0, 9, 0, 0]);
  t.is(w.start, 1_000_000 - 1000);
  h.add('peer', -5);
  h.add('peer', Number.NaN);
  t.deepEqual(h.window(1).peer, [0], 'no negative or NaN bytes');
});

test('rate history: a gap longer than the ring clears it all, and the window is capped at the ring', async (t) => {
  const clock = new FakeClock(0);
  const h = new RateHistory(clock, 4);
  for (let i = 0; i < 4; i++) { h.add('origin', 10 + i); await clock.advance(1000); }
  t.deepEqual(h.window(100).origin, [11, 12, 13], 'ring of 4 keeps the last 3 complete seconds');
  await clock.advance(60_000);
  t.deepEqual(h.window().origin, [0, 0, 0]);
  const fine = new RateHistory(clock, 10, 500);
  fine.add('peer', 100);
  await clock.advance(500);
  t.deepEqual(fine.window(1).peer, [200], 'a half-second bucket reads in bytes per second');
});

function totals(origin: number, peer: number): SavingsTotals {
  const t = Object.fromEntries(KINDS.map((k) => [k, { origin: 0, peer: 0, local: 0, unshared: 0 }])) as SavingsTotals;
  t[KINDS[0]].origin = origin;
  t[KINDS[0]].peer = peer;
  return t;
}

const peer = (id: string): Peer => ({ id, url: `http://127.0.0.1:1/${id}`, address: `127.0.0.1:${id.length}`, healthy: true, bannedUntil: 0, failures: 0, lastOk: 0, source: 'static' } as Peer);

test('site view: asks each usable peer at most once per refresh period, only when summarised, and sums who answered', async (t) => {
  const clock = new FakeClock(10_000_000);
  let peers = [peer('b'), peer('cc')];
  const asked: Array<{ id: string; since: number }> = [];
  const view = new SiteView({
    selfId: 'a',
    table: { usable: () => peers },
    client: {
      stats: async (p, since) => {
        asked.push({ id: (p as Peer).id, since });
        if ((p as Peer).id === 'cc') throw new Error('connect ECONNREFUSED');
        return totals(0, 300);
      },
    },
    savings: { since: () => totals(100, 0) },
    clock,
    refreshMs: 10_000,
  });
  t.is(asked.length, 0, 'nobody is asked while no page watches');
  let s = view.summary();
  t.is(s.at, 0, 'first paint: only this daemon until the round answers');
  t.deepEqual(s.members.map((m) => m.peerId), ['a']);
  await new Promise((r) => setImmediate(r));
  t.deepEqual(asked.map((a) => a.id).sort(), ['b', 'cc']);
  t.is(asked[0]!.since, clock.now() - 86400_000, 'the last 24 h');
  s = view.summary();
  t.is(s.at, clock.now());
  t.deepEqual(s.members.map((m) => [m.peerId, m.self, m.totals?.delivered ?? null, m.error ?? null]), [
    ['a', true, 100, null], ['b', false, 300, null], ['cc', false, null, 'connect ECONNREFUSED'],
  ]);
  t.deepEqual(s.totals, { origin: 100, peer: 300, local: 0, unshared: 0, delivered: 400 }, 'members that did not answer add nothing');

  await clock.advance(9_999);
  view.summary();
  await new Promise((r) => setImmediate(r));
  t.is(asked.length, 2, 'not again within the refresh period');
  peers = [peer('b')];
  await clock.advance(1);
  view.summary();
  view.summary();
  await new Promise((r) => setImmediate(r));
  t.is(asked.length, 3, 'one round at a time');
  t.deepEqual(view.summary().members.map((m) => m.peerId), ['a', 'b'], 'a member that left the table leaves the view');
});

test('sumSources adds every kind', (t) => {
  const x = totals(5, 6);
  x[KINDS[KINDS.length - 1]!].local = 7;
  t.deepEqual(sumSources(x), { origin: 5, peer: 6, local: 7, unshared: 0, delivered: 18 });
});
