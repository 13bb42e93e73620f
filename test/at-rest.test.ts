/**
 * Bytes at rest: a cache file changed while the daemon was stopped, or while it
 * runs, never reaches an agent or a peer as good bytes; the artifact is whole
 * again after the changed chunks are fetched anew (real daemons, real disk).
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { originWithRelease } from './helpers/release.js';
import { parseMetrics, sum } from './helpers/prometheus.js';
import { peerAddresses, startShoald, type RunningDaemon } from './helpers/site.js';
import { runShoal, sha256File, tmpDir } from './helpers/fixtures.js';
import { until } from './helpers/until.js';

const MiB = 1 << 20;

async function metrics(d: RunningDaemon) {
  return parseMetrics(await (await fetch(`${d.api}/metrics`)).text());
}

/** Flips one bit in chunk `i` and zeroes chunk `j` of the daemon's cached copy. */
async function damage(d: RunningDaemon, sha: string, chunkSize: number, flip: number, zero?: number) {
  const fh = await fs.open(path.join(d.dir, 'cache', 'blobs', `${sha}.data`), 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, flip * chunkSize + 12345);
  b[0]! ^= 0x10;
  await fh.write(b, 0, 1, flip * chunkSize + 12345);
  if (zero !== undefined) await fh.write(Buffer.alloc(chunkSize), 0, chunkSize, zero * chunkSize);
  await fh.close();
}

test('changed on disk while stopped: the next fetch finds it, fetches only the changed chunks again, and writes the right file', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 8 * MiB });
  const [addr] = await peerAddresses(1);
  const opts = { name: 'd', dir: path.join(dir, 'd'), peer: addr!, staticPeers: [], trustedKeys: rel.trusted };
  let d = await startShoald(opts);
  t.teardown(() => d.kill('SIGKILL'));
  t.is((await d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id)).state, 'done');
  t.is(origin.bytes(rel.rel), rel.size);
  await d.kill('SIGTERM');
  await damage(d, rel.sha256, rel.chunkSize, 1, 5);

  d = await startShoald(opts);
  const out = path.join(dir, 'out.bin');
  const r = await runShoal(['fetch', rel.manifestUrl, '--api', d.api, '-o', out]);
  t.is(r.code, 0, r.stderr);
  t.is(await sha256File(out), rel.sha256);
  t.is(origin.bytes(rel.rel), rel.size + 2 * rel.chunkSize, 'exactly the two changed chunks came again from the origin');
  t.is(sum(await metrics(d), 'shoal_chunks_dropped_total'), 2);
});

test('the scrub finds a chunk that rotted while the daemon runs; it is never served again and comes back whole', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 6 * MiB });
  const [a, b] = await peerAddresses(2);
  // Every second, as fast as it goes: the test waits for the first run after the damage.
  const d = await startShoald({ name: 'd', dir: path.join(dir, 'd'), peer: a!, staticPeers: [b!], trustedKeys: rel.trusted, config: { scrubCron: '* * * * * *', scrubMaxBytesPerSec: 0 } });
  t.teardown(() => d.kill('SIGKILL'));
  t.is((await d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id)).state, 'done');
  await until(async () => sum(await metrics(d), 'shoal_scrub_chunks_total', { result: 'ok' }) >= 6, 'a clean scrub run');
    await damage(d, rel.sha256, rel.chunkSize, 3);
  await until(async () => sum(await metrics(d), 'shoal_scrub_chunks_total', { result: 'bad' }) === 1, 'the scrub to find the rotten chunk');
  t.is(sum(await metrics(d), 'shoal_chunks_dropped_total'), 1);
  // A peer asking for it now gets nothing from d: it fetches chunk 3 from the origin, the rest from d.
  const peer = await startShoald({ name: 'p', dir: path.join(dir, 'p'), peer: b!, staticPeers: [a!], trustedKeys: rel.trusted });
  t.teardown(() => peer.kill('SIGKILL'));
  await until(async () => (await peer.client.peers()).some((p) => p.healthy), 'the peer sees d');
  const s = await peer.client.waitFetch((await peer.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
  t.is(s.state, 'done');
  t.is(s.bytes.origin, rel.chunkSize, 'only the dropped chunk from the origin');
  t.is(sum(await metrics(peer), 'shoal_chunk_verify_failures_total'), 0, 'the peer never received a bad byte');
  // d itself fetches the chunk again, from the peer this time, and serves the right file.
  await until(async () => (await d.client.peers()).some((p) => p.healthy), 'd sees the peer');
  const out = path.join(dir, 'out.bin');
  const r = await runShoal(['fetch', rel.manifestUrl, '--api', d.api, '-o', out]);
  t.is(r.code, 0, r.stderr);
  t.is(await sha256File(out), rel.sha256);
  t.is(origin.bytes(rel.rel), rel.size + rel.chunkSize);
});
