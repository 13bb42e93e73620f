/**
 * Origins that do not behave: one that ignores Range is read once, whole (not
 * once per run from byte 0), and one that trickles is cut by the rate floor
 * and the fetch fails within the configured bounds instead of running forever.
 */
import test from 'ava';
import path from 'node:path';
import { runShoal, sha256File, tmpDir } from './helpers/fixtures.js';
import { originWithRelease } from './helpers/release.js';
import type { AgentClient } from '../agent-api/client.js';
import { peerAddresses, startShoald, startSite, waitForPeers } from './helpers/site.js';

const MiB = 1 << 20;

test('an origin that ignores Range costs about 1 × size for a 256 MiB artifact fetched by a 2-daemon site', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 256 * MiB });
  origin.faults = { ignoreRange: true };
  const { daemons } = await startSite(t, dir, 2, rel.trusted, { leaseRunChunks: 8, originConcurrency: 2, logLevel: 'debug' });
  await waitForPeers(daemons, 1);
  const results = await Promise.all(daemons.map(async (d) => d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id, { intervalMs: 200 })));
  for (const r of results) t.is(r.state, 'done', JSON.stringify(r.error));
  const ratio = origin.bytes(rel.rel) / rel.size;
  t.log(`origin bytes ÷ size = ${ratio.toFixed(3)} (${origin.requests} requests)`);
  if (ratio > 1.05) for (const d of daemons) t.log(d.name, d.logs.filter((l) => l.includes('origin')).join('\n'));
  t.true(ratio <= 1.05, `origin bytes ÷ size = ${ratio.toFixed(3)}`);
  const out = path.join(dir, 'out.bin');
  t.is((await runShoal(['fetch', rel.manifestUrl, '--api', daemons[1]!.api, '-o', out])).code, 0);
  t.is(await sha256File(out), rel.sha256);
});

test('an origin that trickles at 2 KiB/s fails the fetch with origin-slow within the configured bounds', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 4 * MiB });
  origin.faults = { trickleBytesPerSec: 2048, trickles: 1_000_000 };
  const [a1] = await peerAddresses(1);
  // Window 1 s, five runs cut, back-off at most 5 s each: about 30 s.
  const d = await startShoald({ name: 'floor', dir: path.join(dir, 'floor'), peer: a1!, staticPeers: [], trustedKeys: rel.trusted, config: { originMinBytesPerSec: '16KiB', originMinRateWindowMs: 1000 } });
  t.teardown(async () => { await d.client.close(); await d.kill('SIGKILL'); });
  const started = Date.now();
  const r = await d.client.getFetch(await failed(d.client, rel.manifestUrl));
  const took = Date.now() - started;
  t.is(r.state, 'failed');
  t.is(r.error?.code, 'origin-slow', JSON.stringify(r.error));
  t.true(took < 45_000, `failed after ${took} ms`);
  t.true(d.logs.some((l) => l.includes('origin-slow') || l.includes('slower') || l.includes('sent less than')), 'the cut is logged');
});

/** Starts a fetch that is expected to fail; its id once it has. */
async function failed(client: AgentClient, manifestUrl: string): Promise<string> {
  const { id } = await client.createFetch({ manifestUrl });
  await client.waitFetch(id, { intervalMs: 200 }).catch(() => undefined);
  return id;
}
