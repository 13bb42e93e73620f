/**
 * A site that survives its worst member, over private links (the liar holds the
 * site secret, as a member does): a fake member that ranks first by HRW
 * for the artifact and answers every lease request dishonestly, beside three
 * honest daemons fetching the artifact at once (real processes, HTTP, disk).
 * Every fetch completes with the right bytes, the origin serves within the
 * bound, and the liar is recorded as unreliable.
 */
import test from 'ava';
import { generateSigningKey } from '../manifests/keys.js';
import { IDENTITY_FILE, peerIdOf } from '../daemon/peers/identity.js';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FakeCoordinator, type CoordinatorLie } from './helpers/fake-coordinator.js';
import { tmpDir } from './helpers/fixtures.js';
import { parseMetrics, sum } from './helpers/prometheus.js';
import { originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald, waitForPeers, type RunningDaemon } from './helpers/site.js';

const MiB = 1 << 20;
const SIZE = 24 * MiB;
const CHUNK = MiB;
const RUN = 4; // leaseRunChunks: the double-grant bound is in runs
const TTL = 1500;
const SECRET = 'worst-member-site-secret-01';

async function siteWithLiar(t: import('ava').ExecutionContext, lie: CoordinatorLie, opts: { claimFirstHonestId?: boolean } = {}) {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: SIZE, chunkSize: CHUNK, bytesPerSec: 24 * MiB });
  // Honest identities made up front (a daemon keeps its key in identity.key), so the liar can rank above them.
  const keys = [0, 1, 2].map(() => generateSigningKey());
  const ids = keys.map((k) => peerIdOf(k.publicKey.text));
  const fake = new FakeCoordinator(lie, { sha256: rel.sha256, chunks: SIZE / CHUNK }, ids, 'default', SECRET);
  if (opts.claimFirstHonestId) fake.claim = { peerId: ids[0]!, publicKey: keys[0]!.publicKey.text };
  const fakeAddr = await fake.start();
  t.teardown(() => fake.stop());
  const addrs = await peerAddresses(3);
  const daemons: RunningDaemon[] = [];
  t.teardown(() => Promise.all(daemons.map((d) => d.kill('SIGKILL'))));
  for (const i of ids.keys()) {
    const ddir = path.join(dir, `d${i}`);
    await fs.mkdir(path.join(ddir, 'cache'), { recursive: true });
    await fs.writeFile(path.join(ddir, 'cache', IDENTITY_FILE), keys[i]!.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, { mode: 0o600 });
    daemons.push(await startShoald({ name: `d${i}`, dir: ddir, peer: addrs[i]!, staticPeers: [...addrs, fakeAddr], trustedKeys: rel.trusted, config: { leaseRunChunks: RUN, leaseTtlMs: TTL, siteSecret: SECRET } }));
  }
  // An impostor is never admitted: then each daemon sees only the other two.
  await waitForPeers(daemons, opts.claimFirstHonestId ? 2 : 3);
  const jobs = await Promise.all(daemons.map((d) => d.client.createFetch({ manifestUrl: rel.manifestUrl })));
  const results = await Promise.all(daemons.map((d, i) => d.client.waitFetch(jobs[i]!.id)));
  const metrics = await Promise.all(daemons.map(async (d) => parseMetrics(await (await fetch(`${d.api}/metrics`)).text())));
  for (const [i, d] of daemons.entries()) if (d.peerId !== ids[i]) throw new Error(`${d.name} runs as ${d.peerId}, not its key's ${ids[i]}`);
  return { origin, rel, fake, daemons, results, metrics };
}

const cases: Array<[CoordinatorLie, string]> = [
  ['never-grants', 'never grants anything'],
  ['names-itself', 'names itself as the holder of every chunk and never serves one'],
  ['out-of-range', 'grants chunks past the end of the blob'],
  ['negative', 'grants a negative chunk'],
  ['not-a-run', 'grants chunks that are not one run'],
  ['grants-everyone', 'grants every requester the same chunks'],
];
for (const [lie, what] of cases) {
  test.serial(`a first-ranked coordinator that ${what}: every fetch completes, the origin serves about once, the liar is marked`, async (t) => {
    const { origin, rel, fake, results, metrics } = await siteWithLiar(t, lie);
    for (const r of results) {
      t.is(r.state, 'done', JSON.stringify(r.error));
      t.is(r.files[0]!.held, r.files[0]!.chunks);
    }
    t.true(fake.leaseRequests > 0, 'the liar was asked');
    const served = origin.bytes(rel.rel);
    // Double grants are seen once the runs they started show up in have-maps: at most the
    // runs in flight then (one per other member and origin slot), never a second copy.
    const bound = lie === 'grants-everyone' ? SIZE + 2 * 2 * RUN * CHUNK : SIZE + CHUNK;
    t.log(`${lie}: origin served ${(served / SIZE).toFixed(2)} × the artifact; chunk ranges ${origin.ranges.map(([a, b]) => `${a / CHUNK}-${(b + 1) / CHUNK - 1}`).join(' ')}`);
    t.true(served <= bound, `origin served ${served} bytes, bound ${bound}`);
    t.true(served <= 2 * SIZE);
    const marked = metrics.filter((m) => sum(m, 'shoal_coordinator_distrusted_total') >= 1).length;
    t.true(marked >= 1, 'the liar is recorded as unreliable');
  });
}

test.serial('a member whose have long-polls answer at once with nothing new does not drive a busy loop: polls are paced, then it is banned', async (t) => {
  const { results, fake, daemons, origin, rel } = await siteWithLiar(t, 'fast-polls');
  for (const r of results) t.is(r.state, 'done');
  t.true(origin.bytes(rel.rel) <= SIZE + CHUNK, `origin served ${origin.bytes(rel.rel)} bytes`);
  // Unpaced, three daemons polled such a peer thousands of times a second; paced at 100 ms and
  // banned after 20 empty instant answers, each asks it a few dozen times at most.
  t.log(`have polls the liar answered: ${fake.havePolls}`);
  t.true(fake.havePolls <= daemons.length * 30, `${fake.havePolls} polls`);
  for (const d of daemons) {
    const p = (await d.client.peers()).find((x) => x.id === fake.id);
    t.true(p?.banned, `${d.name} banned it`);
    t.regex(p?.banReason ?? '', /long-polls|coordinator/);
  }
});

test.serial('a host that claims an honest member\'s id (and public key) is never admitted; the honest member is not affected', async (t) => {
  const { origin, rel, daemons, results } = await siteWithLiar(t, 'grants-everyone', { claimFirstHonestId: true });
  for (const r of results) t.is(r.state, 'done');
  t.is(origin.bytes(rel.rel), SIZE, 'a clean site: the origin once');
  for (const d of daemons.slice(1)) {
    const peers = await d.client.peers();
    const victim = peers.find((p) => p.id === daemons[0]!.peerId);
    t.true(victim?.healthy && !victim.banned, `${d.name} still uses the real ${daemons[0]!.peerId}`);
    t.is(victim?.address, daemons[0]!.peer, 'at its own address');
    t.is(peers.length, 2, 'the impostor never became a member');
  }
  t.is(results.reduce((n, r) => n + r.bytes.peer + r.bytes.origin, 0), 3 * SIZE);
});
