/**
 * Multi-daemon integration on 127.0.0.1 with real shoald processes, real
 * HTTP and real disk: the origin is pulled once per site.
 */
import test from 'ava';
import path from 'node:path';
import { parseMetrics, sum } from './helpers/prometheus.js';
import { originWithRelease } from './helpers/release.js';
import { startShoald, startSite, waitForPeers, type RunningDaemon } from './helpers/site.js';
import { runShoal, sha256File, tmpDir } from './helpers/fixtures.js';

const MiB = 1 << 20;

async function fetchAll(daemons: RunningDaemon[], manifestUrl: string) {
  const jobs = await Promise.all(daemons.map((d) => d.client.createFetch({ manifestUrl })));
  return Promise.all(daemons.map((d, i) => d.client.waitFetch(jobs[i]!.id, { intervalMs: 100 })));
}

test('5 daemons fetch 64 MiB at once: every copy verifies and the origin serves exactly one copy; a 6th later pulls nothing from the origin', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 64 * MiB, bytesPerSec: 64 * MiB });
  const { daemons, addresses } = await startSite(t, dir, 5, rel.trusted, {}, 1);
  await waitForPeers(daemons, 4);

  const results = await fetchAll(daemons, rel.manifestUrl);
  for (const r of results) t.is(r.state, 'done');
  t.is(origin.bytes(rel.rel), rel.size, 'origin bytes for the artifact == artifact size');
  const fromOrigin = results.reduce((n, r) => n + r.bytes.origin, 0);
  const fromPeers = results.reduce((n, r) => n + r.bytes.peer, 0);
  t.is(fromOrigin, rel.size);
  t.is(fromPeers, 4 * rel.size);

  // Every copy, written out through the CLI, hashes to the manifest.
  for (const d of daemons.slice(0, 2)) {
    const out = path.join(dir, `${d.name}.out`);
    const r = await runShoal(['fetch', rel.manifestUrl, '--api', d.api, '-o', out]);
    t.is(r.code, 0, r.stderr);
    t.is(await sha256File(out), rel.sha256);
  }

  // A 6th daemon joining later gets everything from peers.
  const late = await startShoald({ name: 'd5', dir: path.join(dir, 'd5'), peer: addresses[5]!, staticPeers: addresses, trustedKeys: rel.trusted, config: { leaseTtlMs: 3000 } });
  t.teardown(async () => { await late.client.close(); await late.kill('SIGKILL'); });
  await waitForPeers([late], 5);
  const before = origin.bytes(rel.rel);
  const [r6] = await fetchAll([late], rel.manifestUrl);
  t.is(r6!.state, 'done');
  t.is(origin.bytes(rel.rel) - before, 0, 'the late daemon pulled 0 bytes from the origin');
  t.is(r6!.bytes.peer, rel.size);
});

test('4 daemons fetching at once what a 5th holds trade chunks: the holder uploads well under 4 copies', async (t) => {
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 48 * MiB, chunkSize: MiB });
  // Every uplink capped alike, as on an office LAN: the one holder cannot simply outrun the rest.
  const { daemons } = await startSite(t, dir, 5, rel.trusted, { uploadMaxBytesPerSec: 48 * MiB });
  await waitForPeers(daemons, 4);
  const [holder, ...fetchers] = daemons as [RunningDaemon, ...RunningDaemon[]];
  await fetchAll([holder], rel.manifestUrl);
  const results = await fetchAll(fetchers, rel.manifestUrl);
  for (const r of results) {
    t.is(r.state, 'done');
    t.is(r.bytes.origin, 0);
  }
  const uploaded = async (d: RunningDaemon) => sum(parseMetrics(await (await fetch(`${d.api}/metrics`)).text()), 'shoal_upload_bytes_total');
  const fromHolder = await uploaded(holder);
  const traded = (await Promise.all(fetchers.map(uploaded))).reduce((a, b) => a + b, 0);
  t.is(fromHolder + traded, 4 * rel.size, 'every byte a fetcher took, some daemon uploaded');
  t.log(`holder uploaded ${(fromHolder / rel.size).toFixed(2)} copies, the fetchers ${(traded / rel.size).toFixed(2)}`);
  // In lockstep (every fetcher picking the same chunks) the holder would upload ~4 copies.
  t.true(fromHolder < 2.5 * rel.size, `holder uploaded ${(fromHolder / rel.size).toFixed(2)} copies`);
});
