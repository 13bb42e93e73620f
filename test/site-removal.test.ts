/**
 * Coordinator state follows the caches: an artifact removed on every daemon
 * is fetched again straight from the origin, once, with no coordinator
 * waiting on holders that no longer hold anything.
 */
import test from 'ava';
import { tmpDir } from './helpers/fixtures.js';
import { parseMetrics, sum } from './helpers/prometheus.js';
import { originWithRelease } from './helpers/release.js';
import { startSite, waitForPeers } from './helpers/site.js';

const MiB = 1 << 20;

test('an artifact removed on every daemon is fetched again by one of them from the origin at once, once', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 12 * MiB, bytesPerSec: 24 * MiB });
  const { daemons } = await startSite(t, dir, 3, rel.trusted, { leaseRunChunks: 2, noProgressTimeoutMs: 60_000 });
  await waitForPeers(daemons, 2);
  const fetchAll = () => Promise.all(daemons.map(async (d) => d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id)));
  for (const r of await fetchAll()) t.is(r.state, 'done');
  t.is(origin.bytes(rel.rel), rel.size);
  for (const d of daemons) t.is((await d.client.removeArtifact('app', '1.0.0')).blobsRemoved, 1);
  // Only one daemon wants it again: the chunks the others fetched the first time must not be
  // waited for at them (they would never come), nor fetched from the origin twice.
  const again = await daemons[0]!.client.waitFetch((await daemons[0]!.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
  t.is(again.state, 'done');
  t.is(origin.bytes(rel.rel), 2 * rel.size, 'the second fetch took the artifact once more from the origin');
  for (const d of daemons) {
    const m = parseMetrics(await (await fetch(`${d.api}/metrics`)).text());
    t.is(sum(m, 'shoal_coordinator_distrusted_total'), 0, `${d.name}: no coordinator had to be given up on (it named no stale holder)`);
  }
});
