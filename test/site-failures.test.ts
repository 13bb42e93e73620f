/**
 * Failure handling with real processes: kill -9 of the coordinator or of a
 * leaseholder mid-transfer, and a daemon restarted mid-download.
 */
import test from 'ava';
import { until } from './helpers/until.js';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { coordinatorFor } from '../daemon/swarm/hrw.js';
import { originWithRelease } from './helpers/release.js';
import { killCountingInFlight, peerAddresses, startShoald, startSite, waitForPeers, type RunningDaemon } from './helpers/site.js';
import { tmpDir } from './helpers/fixtures.js';

const MiB = 1 << 20;
// Small lease runs keep "chunks in flight at the kill" small and countable.
const TUNING = { leaseRunChunks: 2, originConcurrency: 2, leaseTtlMs: 2000 };

async function killMidTransfer(t: import('ava').ExecutionContext, pickVictim: (daemons: RunningDaemon[], blob: string) => Promise<RunningDaemon>) {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 48 * MiB, bytesPerSec: 16 * MiB });
  const { daemons } = await startSite(t, dir, 4, rel.trusted, TUNING);
  await waitForPeers(daemons, 3);
  const jobs = await Promise.all(daemons.map((d) => d.client.createFetch({ manifestUrl: rel.manifestUrl })));
  // Kill once a quarter of the artifact has left the origin.
  await until(() => origin.bytes(rel.rel) >= rel.size / 4, 'a quarter fetched', 20_000);
  const victim = await pickVictim(daemons, rel.sha256);
  const inFlight = await killCountingInFlight(victim, origin);
  const survivors = daemons.filter((d) => d !== victim);
  const results = await Promise.all(survivors.map((d) => d.client.waitFetch(jobs[daemons.indexOf(d)]!.id, { intervalMs: 100 })));
  for (const r of results) t.is(r.state, 'done');
  const extra = origin.bytes(rel.rel) - rel.size;
  // The bound: what was in flight from the origin at the kill, plus a chunk only the victim held.
  t.log(`origin bytes: size + ${(extra / MiB).toFixed(2)} MiB; in flight at the kill: ${(inFlight / MiB).toFixed(2)} MiB`);
  t.true(extra <= inFlight + rel.chunkSize, `extra origin bytes ${extra}, in flight at the kill ${inFlight}`);
  return victim;
}

test('kill -9 the coordinator mid-transfer: everyone else finishes; extra origin bytes ≤ chunks in flight', async (t) => {
  await killMidTransfer(t, async (daemons, blob) => {
    const id = coordinatorFor(blob, daemons.map((d) => d.peerId));
    return daemons.find((d) => d.peerId === id)!;
  });
});

test('kill -9 a leaseholder mid-transfer: its leases are granted again and everyone else finishes', async (t) => {
  await killMidTransfer(t, async (daemons, blob) => {
    const coord = coordinatorFor(blob, daemons.map((d) => d.peerId));
    // A non-coordinator that is fetching from the origin right now holds leases.
    let victim: RunningDaemon | undefined;
    await until(async () => {
      for (const d of daemons) {
        if (d.peerId === coord) continue;
        const s = await d.client.status();
        if (s.downloads[0] && s.downloads[0].bytes.origin > 0 && s.downloads[0].held < s.downloads[0].chunks) { victim = d; return true; }
      }
      return false;
    }, 'a leaseholder that is not the coordinator', 20_000);
    return victim!;
  });
});

test('a daemon restarted mid-download resumes from disk and does not fetch verified chunks again', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 32 * MiB, bytesPerSec: 16 * MiB });
  const [addr] = await peerAddresses(1);
  const opts = { name: 'solo', dir: path.join(dir, 'solo'), peer: addr!, staticPeers: [], trustedKeys: rel.trusted, config: TUNING };
  const first = await startShoald(opts);
  const job = await first.client.createFetch({ manifestUrl: rel.manifestUrl });
  await until(() => origin.bytes(rel.rel) >= rel.size / 2, 'half fetched', 20_000);
  const heldBefore = (await first.client.getFetch(job.id)).held;
  await first.client.close();
  const inFlight = await killCountingInFlight(first, origin);
  const servedBeforeRestart = origin.bytes(rel.rel);

  // What the journal on disk records is exactly what survived the kill.
  const journal = await fs.readFile(path.join(opts.dir, 'cache/blobs', `${rel.sha256}.journal`));
  const recorded = new Set<number>();
  for (let off = 0; off + 4 <= journal.length; off += 4) recorded.add(journal.readUInt32LE(off));
  recorded.delete(0xffffffff);

  const second = await startShoald(opts);
  t.teardown(async () => { await second.client.close(); await second.kill('SIGKILL'); });
  const job2 = await second.client.createFetch({ manifestUrl: rel.manifestUrl });
  const r = await second.client.waitFetch(job2.id, { intervalMs: 100 });
  t.is(r.state, 'done');
  t.true(recorded.size > 0 && heldBefore > 0);
  t.log(`at the kill: ${heldBefore} bytes held, ${recorded.size} chunks journaled, ${(inFlight / MiB).toFixed(1)} MiB in flight; origin served ${servedBeforeRestart} before the restart`);
  // Exactly the unrecorded chunks are fetched again: no verified chunk twice, none missing.
  t.is(r.bytes.origin, rel.size - recorded.size * rel.chunkSize, 'recorded chunks were not fetched again');
  t.is(origin.bytes(rel.rel) - servedBeforeRestart, r.bytes.origin, 'and nothing else came from the origin');
});
