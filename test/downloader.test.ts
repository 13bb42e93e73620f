/**
 * The download loop on its own: in-memory peers, origin and coordinators on a
 * fake clock (test/helpers/mem-site.ts), a real blob on disk. No sockets, no sleeps.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileEntry, tmpDir } from './helpers/fixtures.js';
import { MemSite } from './helpers/mem-site.js';

const CHUNK = 256 << 10;

async function site(t: Parameters<typeof tmpDir>[0], chunks = 12) {
  const data = randomBytes(chunks * CHUNK - 1000);
  const e = fileEntry('x', data, CHUNK);
  const s = await MemSite.create(await tmpDir(t), data, { sha256: e.sha256, size: e.size, chunkSize: CHUNK, chunks: e.chunks });
  t.teardown(() => s.store.close());
  return s;
}

async function stored(s: MemSite) {
  return fs.readFile(path.join(s.store.dir, `${s.layout.sha256}.data`));
}

test('alone: every chunk comes from the origin once, in lease runs, verified', async (t) => {
  const s = await site(t);
  const { d, blob } = await s.download();
  await s.clock.run(d.done);
  t.is(d.state, 'done');
  t.true(blob.complete);
  t.is(s.originBytes, s.data.length, 'each byte from the origin exactly once');
  t.true(s.originRequests.length <= 3 + 1, `one request per run of up to 4 chunks (${s.originRequests.length})`);
  t.deepEqual(d.bytes, { origin: s.data.length, peer: 0 });
  t.true((await stored(s)).equals(s.data));
});

test('a peer holds it: every chunk comes from the peer and none from the origin', async (t) => {
  const s = await site(t);
  const p = s.addPeer('holder000001', 'all');
  const { d } = await s.download();
  await s.clock.run(d.done);
  t.is(d.state, 'done');
  t.is(s.originBytes, 0);
  t.is(p.ranges, s.layout.chunks.length);
  t.true((await stored(s)).equals(s.data));
});

test('a lying peer: its bad chunk is refused, the peer banned by code, and the chunk comes from an honest holder', async (t) => {
  const s = await site(t);
  s.addPeer('liar00000001', 'all', { lies: new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) });
  const honest = s.addPeer('honest000001', 'all');
  const { d } = await s.download();
  await s.clock.run(d.done);
  t.is(d.state, 'done');
  t.regex(s.banned.get('liar00000001') ?? '', /SHA-256 differs/);
  t.false(s.banned.has('honest000001'));
  t.true(s.verifyFailures >= 1);
  t.true(honest.ranges >= s.layout.chunks.length - 4, 'the rest came from the honest peer');
  t.is(s.originBytes, 0);
  t.true((await stored(s)).equals(s.data), 'not one bad byte stored');
});

test('a peer that no longer holds a chunk (416) is neither banned nor marked down', async (t) => {
  const s = await site(t, 4);
  const p = s.addPeer('dropper00001', 'all', { lacks: true });
  s.addPeer('holder000001', 'all');
  const { d } = await s.download();
  await s.clock.run(d.done);
  t.is(d.state, 'done');
  t.true(p.ranges >= 1, 'it was asked');
  t.false(s.banned.has('dropper00001'));
  t.false(s.down.includes('dropper00001'));
});

test('a dead leaseholder: the coordinator re-grants its chunks after the lease TTL, and the origin serves each byte once', async (t) => {
  const s = await site(t, 8);
  const coord = s.addPeer('coord0000001', 'none');
  coord.coordinator = s.coordinator(coord.id, 1000);
  // A member took every chunk's lease, then died without fetching or renewing.
  s.addPeer('ghost0000001', 'none');
  const all = s.layout.chunks.map((_, i) => i);
  for (let k = 0; k < 8; k += 4) coord.coordinator.handle({ blob: s.layout.sha256, peer: 'ghost0000001', chunks: 8, want: all.slice(k), max: 4 }, 8);
  s.coordinatorOrder = [coord.id, s.selfId];
  const { d } = await s.download();
  const t0 = s.clock.now();
  await s.clock.run(d.done);
  t.is(d.state, 'done');
  t.true(s.clock.now() - t0 >= 1000, 'nothing re-granted before the TTL ran out');
  t.is(s.originBytes, s.data.length);
  t.true((await stored(s)).equals(s.data));
});

test('a coordinator that stops answering is marked down and the next in HRW order grants', async (t) => {
  const s = await site(t, 8);
  const first = s.addPeer('coord0000001', 'none', { leaseFails: true });
  const second = s.addPeer('coord0000002', 'none');
  second.coordinator = s.coordinator(second.id);
  s.coordinatorOrder = [first.id, second.id, s.selfId];
  const { d } = await s.download();
  await s.clock.run(d.done);
  t.is(d.state, 'done');
  t.true(s.down.includes(first.id));
  t.true(second.coordinator.granted >= 8, 'the successor granted every chunk');
  t.is(s.originBytes, s.data.length);
});

test('a coordinator that names a holder who never delivers is skipped after two lease TTLs; the fetch completes, the origin serves once', async (t) => {
  const s = await site(t, 4);
  const ghost = s.addPeer('coord0000001', 'none');
  ghost.coordinator = s.coordinator(ghost.id, 10 * 60_000);
  for (let k = 0; k < 4; k++) ghost.coordinator.handle({ blob: s.layout.sha256, peer: 'nobody000001', chunks: 4, want: [k], max: 1 }, 4);
  s.addPeer('nobody000001', 'none');
  s.coordinatorOrder = [ghost.id, s.selfId];
  const { d } = await s.download();
  const t0 = s.clock.now();
  await s.clock.run(d.done);
  t.is(d.state, 'done');
  t.true(s.clock.now() - t0 >= 2 * 1000, 'not before two lease TTLs');
  t.is(s.distrusted, 1);
  t.false(s.banned.has(ghost.id), 'starving us is not proof of a lie: skipped for this blob, not banned');
  t.is(s.originBytes, s.data.length);
});

/** Coordinator answers that do not fit the request: each is refused, the liar banned, the next asked. */
const lies: Array<[string, (want: number[]) => { granted: number[]; held?: Record<string, string> }]> = [
  ['negative chunks', () => ({ granted: [-1, 0] })],
  ['chunks past the end', (w) => ({ granted: [w[0]!, 99_999] })],
  ['not one run', (w) => ({ granted: [w[0]!, w[0]! + 2] })],
  ['more than max', (w) => ({ granted: w.slice(0, 8) })],
  // Chunk 0 is granted (validly) at first; once it is held or in flight it is not asked for again.
  ['chunks not asked for', () => ({ granted: [0] })],
  ['a holder who is not a member', (w) => ({ granted: [], held: { [w[0]!]: 'stranger0001' } })],
  ['fractions', () => ({ granted: [0.5] })],
];
for (const [what, lie] of lies) {
  test(`a coordinator granting ${what} is banned and the next in order grants; no origin range comes from the lie`, async (t) => {
    const s = await site(t, 8);
    const liar = s.addPeer('liar00000001', 'none');
    const asked: number[][] = [];
    liar.answer = (req) => {
      asked.push(req.want ?? []);
      const r = lie(req.want ?? []);
      return { coordinator: liar.id, held: r.held ?? {}, granted: r.granted };
    };
    s.coordinatorOrder = [liar.id, s.selfId];
    const { d } = await s.download();
    await s.clock.run(d.done);
    t.is(d.state, 'done');
    t.regex(s.banned.get(liar.id) ?? '', /coordinator: /);
    t.is(s.distrusted, 1);
    t.is(s.originBytes, s.data.length, 'each byte once, all through our own grants');
    for (const [a, b] of s.originRequests) t.true(a >= 0 && b < s.data.length && a <= b);
  });
}

test('a chunk another member visibly leases is not asked for, whoever would grant it', async (t) => {
  const s = await site(t, 8);
  // A member fetching chunks 0-3 from the origin, and getting somewhere (it holds 0 already).
  const busy = s.addPeer('busy00000001', [0], { leasing: new Set([1, 2, 3]) });
  // A coordinator that grants whatever is asked, as if nobody leased anything.
  const sloppy = s.addPeer('coord0000001', 'none');
  sloppy.answer = (req) => ({ coordinator: sloppy.id, held: {}, granted: (req.want ?? []).slice(0, 4) });
  s.coordinatorOrder = [sloppy.id, s.selfId];
  const { d } = await s.download();
  // The leased chunks arrive at the busy member a little later, and it offers them.
  s.clock.setTimeout(() => { busy.have.fill(1, 0, 4); busy.leasing = new Set(); busy.seq++; busy.changed.emit('change'); }, 500);
  await s.clock.run(d.done);
  t.is(d.state, 'done');
  t.is(s.originBytes, 4 * CHUNK - 1000, 'chunks 0-3 came from the busy member, never from the origin');
  t.true(busy.ranges >= 4);
});

test('a grant of chunks another member is leasing reveals a double grant: handed back, the coordinator skipped, no origin byte for them', async (t) => {
  const s = await site(t, 8);
  // Holding chunk 7 from the start, its have-map is long-polled (and so heard at once).
  const busy = s.addPeer('busy00000001', [7]);
  const twice = s.addPeer('coord0000001', 'none');
  const released: number[] = [];
  let granted: number[] | undefined;
  twice.answer = async (req) => {
    released.push(...(req.release ?? []));
    if (!req.want?.length) return { coordinator: twice.id, held: {}, granted: [] };
    // It grants the same run to the busy member, which starts on it at once (never more than asked for).
    const run = req.want.slice(0, Math.min(4, req.max ?? 4));
    granted ??= run;
    busy.leasing = new Set(run);
    busy.have[0] = 1;
    busy.seq++;
    busy.changed.emit('change');
    // The answer takes a moment (a few turns of the fake clock, a few hundred fake ms):
    // long enough for our have-map poll of the busy member to come back.
    for (let k = 0; k < 6; k++) await new Promise((r) => setImmediate(r));
    return { coordinator: twice.id, held: {}, granted: run };
  };
  s.coordinatorOrder = [twice.id, s.selfId];
  const { d } = await s.download();
  s.clock.setTimeout(() => { busy.have.fill(1, 0, 4); busy.leasing = new Set(); busy.seq++; busy.changed.emit('change'); }, 500);
  await s.clock.run(d.done);
  t.is(d.state, 'done');
  t.is(s.distrusted, 1);
  t.false(s.banned.has(twice.id), 'two members that each believe they coordinate look the same: skipped, not banned');
  t.true(granted!.length >= 2);
  t.deepEqual(released.slice(0, granted!.length), granted, 'the double grant was handed back');
  t.is(s.originBytes, (7 - granted!.length) * CHUNK, 'the doubly granted chunks came from the member that leased them first (and 7 from what it held), only the rest from the origin');
});

test('with no source at all (no holder, the origin down) the download fails with unavailable after noProgressTimeoutMs of fake time', async (t) => {
  const s = await site(t, 4);
  s.originDown = true;
  const { d } = await s.download();
  const t0 = s.clock.now();
  const e = await t.throwsAsync(s.clock.run(d.done, 500));
  t.regex(String((e as { code?: string }).code), /unavailable|origin-error/);
  t.true(s.clock.now() - t0 >= 1000);
});
