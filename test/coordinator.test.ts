import test from 'ava';
import { LeaseCoordinator } from '../daemon/swarm/coordinator.js';
import { FakeClock } from './helpers/fake-clock.js';
import { checkGrant } from '../daemon/swarm/grant-check.js';

const coordinator = (ttlMs: number, isLive: (id: string) => boolean, clock = new FakeClock()) => new LeaseCoordinator({ selfId: 'self00000000', ttlMs, clock, isLive });
import { coordinatorFor, hrwRank } from '../daemon/swarm/hrw.js';

const blob = 'ab'.repeat(32);

test('HRW: every daemon computes the same coordinator; removing it promotes the next in order', (t) => {
  const ids = ['peerAAAAAAAA', 'peerBBBBBBBB', 'peerCCCCCCCC', 'peerDDDDDDDD'];
  const rank = hrwRank(blob, ids);
  t.is(coordinatorFor(blob, [...ids].reverse()), rank[0]);
  t.is(coordinatorFor(blob, ids.filter((i) => i !== rank[0])), rank[1]);
  // Different blobs spread over different coordinators.
  const coords = new Set(Array.from({ length: 64 }, (_, i) => coordinatorFor(i.toString(16).padStart(64, '0'), ids)));
  t.true(coords.size >= 3);
});

test('each chunk is granted to exactly one leaseholder, as one contiguous run; others learn the holder', (t) => {
  const live = new Set(['self00000000', 'a00000000000', 'b00000000000']);
  const c = coordinator(10_000, (id) => live.has(id));
  const want = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const a = c.handle({ blob, peer: 'a00000000000', chunks: 10, want, max: 4 }, 10);
  t.deepEqual(a.granted, [0, 1, 2, 3]);
  const b = c.handle({ blob, peer: 'b00000000000', chunks: 10, want, max: 4 }, 10);
  t.deepEqual(b.granted, [4, 5, 6, 7]);
  t.deepEqual(b.held, { 0: 'a00000000000', 1: 'a00000000000', 2: 'a00000000000', 3: 'a00000000000' });
  // Non-contiguous wants only yield the first run.
  const s = c.handle({ blob, peer: 'self00000000', chunks: 10, want: [8, 9, 1], max: 8 }, 10);
  t.deepEqual(s.granted, [8, 9]);
  t.is(c.handle({ blob, peer: 'b00000000000', chunks: 10, want: [99, -1], max: 4 }, 10).granted.length, 0, 'out-of-range chunks ignored');
});

test('a dead holder loses its leases at once; an expired lease is granted again; done chunks stay with their holder', async (t) => {
  const live = new Set(['a00000000000', 'b00000000000']);
  const clock = new FakeClock();
  const c = coordinator(50, (id) => live.has(id), clock);
  t.deepEqual(c.handle({ blob, peer: 'a00000000000', chunks: 4, want: [0, 1], max: 2 }, 4).granted, [0, 1]);
  c.handle({ blob, peer: 'a00000000000', chunks: 4, done: [0] }, 4);
  live.delete('a00000000000');
  const r = c.handle({ blob, peer: 'b00000000000', chunks: 4, want: [0, 1], max: 2 }, 4);
  t.deepEqual(r.granted, [0, 1], 'holder gone: both re-granted');
  t.deepEqual(c.handle({ blob, peer: 'a00000000000', chunks: 4, want: [2], max: 1 }, 4).granted, [2]);
  live.add('a00000000000');
  await clock.advance(80);
  t.deepEqual(c.handle({ blob, peer: 'b00000000000', chunks: 4, want: [2], max: 1 }, 4).granted, [2], 'expired, not renewed');
  t.true(c.expired >= 1);
  // Renewal by the holder keeps a lease alive.
  c.handle({ blob, peer: 'a00000000000', chunks: 4, want: [3], max: 1 }, 4);
  await clock.advance(30);
  c.handle({ blob, peer: 'a00000000000', chunks: 4, renew: [3] }, 4);
  await clock.advance(30);
  t.deepEqual(c.handle({ blob, peer: 'b00000000000', chunks: 4, want: [3], max: 1 }, 4).held, { 3: 'a00000000000' });
});

test('a holder that asks again for a chunk it reported done (it dropped it since) is granted it anew', (t) => {
  const c = coordinator(10_000, () => true);
  t.deepEqual(c.handle({ blob, peer: 'a00000000000', chunks: 4, want: [0, 1], max: 2 }, 4).granted, [0, 1]);
  t.deepEqual(c.handle({ blob, peer: 'a00000000000', chunks: 4, want: [0, 1], max: 2 }, 4).granted, [], 'a run still in flight is not granted twice');
  c.handle({ blob, peer: 'a00000000000', chunks: 4, done: [0, 1] }, 4);
  t.deepEqual(c.handle({ blob, peer: 'b00000000000', chunks: 4, want: [0], max: 2 }, 4).held, { 0: 'a00000000000' });
  t.deepEqual(c.handle({ blob, peer: 'a00000000000', chunks: 4, want: [1], max: 2 }, 4).granted, [1]);
});

test('after a member leaves, a coordinator new to a blob hears renewals before granting', async (t) => {
  const clock = new FakeClock();
  const c = coordinator(10_000, () => true, clock);
  c.memberLeft('gone00000001');
  const early = c.handle({ blob, peer: 'b00000000000', chunks: 4, want: [0, 1], max: 2 }, 4);
  t.deepEqual(early.granted, []);
  t.true((early.retryMs ?? 0) > 0);
  const renew = c.handle({ blob, peer: 'a00000000000', chunks: 4, renew: [0] }, 4);
  t.deepEqual(renew.granted, [0], 'the old leaseholder keeps its lease');
  t.deepEqual(c.handle({ blob, peer: 'b00000000000', chunks: 4, want: [0], max: 2 }, 4).held, { 0: 'a00000000000' });
  await clock.advance(10_001);
  t.deepEqual(c.handle({ blob, peer: 'b00000000000', chunks: 4, want: [1], max: 2 }, 4).granted, [1], 'after the grace period it grants');
});

test('churn among members that did not coordinate a blob does not hold its grants back', async (t) => {
  const clock = new FakeClock();
  const other = 'cd'.repeat(32);
  const c = new LeaseCoordinator({ selfId: 'self00000000', ttlMs: 10_000, clock, isLive: () => true, ranksFirst: () => true, wasCoordinator: (b, id) => b === blob && id === 'coord0000001' });
  c.memberLeft('bystander001');
  t.deepEqual(c.handle({ blob: other, peer: 'a00000000000', chunks: 4, want: [0], max: 1 }, 4).granted, [0], 'a bystander left: no grace');
  c.memberLeft('coord0000001');
  const r = c.handle({ blob, peer: 'a00000000000', chunks: 4, want: [0], max: 1 }, 4);
  t.deepEqual(r.granted, [], 'its coordinator left: grace, to hear the leaseholders first');
  t.true((r.retryMs ?? 0) > 0);
  t.deepEqual(c.handle({ blob: 'ef'.repeat(32), peer: 'a00000000000', chunks: 4, want: [0], max: 1 }, 4).granted, [0], 'other blobs are not held back');
  await clock.advance(10_001);
  t.deepEqual(c.handle({ blob, peer: 'a00000000000', chunks: 4, want: [0], max: 1 }, 4).granted, [0]);
});

test('a flood of lease requests for invented blobs leaves the coordinator\'s state bounded, and a real blob\'s leases work after it', async (t) => {
  const clock = new FakeClock();
  const c = coordinator(10_000, () => true, clock);
  for (let i = 0; i < 20_000; i++) {
    const b = i.toString(16).padStart(64, '0');
    c.handle({ blob: b, peer: `flood${String(i % 7).padStart(7, '0')}`, chunks: 1 << 20, want: Array.from({ length: 64 }, (_, k) => k), max: 64, done: Array.from({ length: 100 }, (_, k) => 1000 + k) }, 1 << 20);
  }
  t.true(c.size.blobs <= 256, `${c.size.blobs} blobs tracked`);
  t.true(c.size.records <= 1 << 16, `${c.size.records} records`);
  t.deepEqual(c.handle({ blob, peer: 'a00000000000', chunks: 4, want: [0, 1], max: 2 }, 4).granted, [0, 1]);
  // Done records lapse after 30 lease TTLs: then holders are known from have-maps alone.
  c.handle({ blob, peer: 'a00000000000', chunks: 4, done: [0, 1] }, 4);
  t.deepEqual(c.handle({ blob, peer: 'b00000000000', chunks: 4, want: [0], max: 1 }, 4).held, { 0: 'a00000000000' });
  await clock.advance(30 * 10_000 + 1);
  t.deepEqual(c.handle({ blob, peer: 'b00000000000', chunks: 4, want: [0], max: 1 }, 4).granted, [0]);
});

test('a whole-body request (the origin ignores Range) is granted every free chunk, gaps allowed; a chunk kept from the body names its keeper', (t) => {
  const live = new Set(['self00000000', 'a00000000000', 'b00000000000']);
  const c = coordinator(10_000, (id) => live.has(id));
  const all = Array.from({ length: 100 }, (_, i) => i);
  t.deepEqual(c.handle({ blob, peer: 'a00000000000', chunks: 100, want: [10, 11, 12], max: 8 }, 100).granted, [10, 11, 12]);
  const w = c.handle({ blob, peer: 'b00000000000', chunks: 100, want: all, max: 4096, whole: true }, 100);
  t.deepEqual(w.granted, all.filter((i) => i < 10 || i > 12), 'all but the chunks leased to a, past the usual cap of 64');
  t.deepEqual(checkGrant({ blob, peer: 'b00000000000', chunks: 100, want: all, max: 4096, whole: true }, w, (id) => live.has(id)).ok, true);
  t.false(checkGrant({ blob, peer: 'b00000000000', chunks: 100, want: all, max: 4096 }, w, (id) => live.has(id)).ok, 'without whole, gaps are refused');
  // b's body passes over 10-11 and keeps them: from then on b is named their holder.
  c.handle({ blob, peer: 'b00000000000', chunks: 100, done: [10, 11] }, 100);
  t.deepEqual(c.handle({ blob, peer: 'self00000000', chunks: 100, want: [10, 11], max: 8 }, 100).held, { 10: 'b00000000000', 11: 'b00000000000' });
});
