/** The agent API's cache control, progress events, cancel and ranged reads, through the client and the CLI. */
import test, { type ExecutionContext } from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { makeRelease, originWithRelease } from './helpers/release.js';
import { startSite } from './helpers/site.js';
import { runShoal, tmpDir } from './helpers/fixtures.js';

const MiB = 1 << 20;

/** One daemon and a release of `size` bytes on an origin serving `bytesPerSec`. */
async function oneDaemon(t: ExecutionContext, size: number, bytesPerSec: number) {
  const dir = await tmpDir(t);
  const { url, rel } = await originWithRelease(t, dir, { size, bytesPerSec });
  const { daemons } = await startSite(t, dir, 1, rel.trusted);
  return { url, rel, d: daemons[0]! };
}

test('progress events to completion, cache ls/pin/gc/rm, ranged reads for resuming agents, status', async (t) => {
  const { url, rel, d } = await oneDaemon(t, 6 * MiB, 12 * MiB);
  const rel2 = await makeRelease(path.dirname(rel.file), url, { size: 3 * MiB, version: '2.0.0', sequence: 2, key: rel.key });
  const job = await d.client.createFetch({ manifestUrl: rel.manifestUrl });
  const events = [];
  for await (const e of d.client.fetchEvents(job.id)) events.push(e);
  t.is(events.at(-1)!.event, 'done');
  t.true(events.length >= 2, 'progress before the end');
  const held = events.map((e) => e.data.held);
  t.deepEqual(held, [...held].sort((a, b) => a - b), 'progress only grows');
  t.is(events.at(-1)!.data.held, rel.size);
  await d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel2.manifestUrl })).id);

  // A resuming agent reads from the middle.
  const res = await fetch(`${d.api}/api/v1/artifacts/app/1.0.0/files/${rel.rel}`, { headers: { range: 'bytes=100-199' } });
  t.is(res.status, 206);
  t.is(res.headers.get('content-range'), `bytes 100-199/${rel.size}`);
  t.true(Buffer.from(await res.arrayBuffer()).equals((await fs.readFile(rel.file)).subarray(100, 200)));

  let r = await runShoal(['cache', 'ls', '--api', d.api, '--json']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout).artifacts.map((a: { version: string; complete: boolean }) => [a.version, a.complete]), [['2.0.0', true], ['1.0.0', true]]);
  t.is((await runShoal(['cache', 'pin', 'app', '1.0.0', '--api', d.api])).code, 0);
  r = await runShoal(['cache', 'gc', '--target', '0', '--api', d.api, '--json']);
  const gc = JSON.parse(r.stdout);
  t.is(gc.freedBytes, rel2.size, 'the unpinned artifact was evicted');
  t.false(gc.reached, 'the pinned one stays, so the target was not reached');
  const ls = (await d.client.artifacts()).map((a) => [a.version, a.complete, a.pinned]);
  t.deepEqual(ls, [['2.0.0', false, false], ['1.0.0', true, true]]);
  t.is((await fetch(`${d.api}/api/v1/artifacts/app/2.0.0/files/${rel2.rel}`)).status, 404);

  r = await runShoal(['cache', 'rm', 'app', '1.0.0', '--api', d.api]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /1 blob\(s\), 6\.0 MiB freed/);
  t.deepEqual((await d.client.artifacts()).map((a) => a.version), ['2.0.0']);
  t.is((await runShoal(['cache', 'rm', 'app', '9.9', '--api', d.api])).code, 1);
  t.is((await runShoal(['cache', 'frobnicate', '--api', d.api])).code, 2);
  r = await runShoal(['status', '--api', d.api]);
  t.is(r.code, 0);
  t.regex(r.stdout, new RegExp(`shoald ${d.peerId} · site default`));
});

test('DELETE cancels a fetch in flight: its events end with "cancelled"', async (t) => {
  const { rel, d } = await oneDaemon(t, 16 * MiB, 2 * MiB);
  const c = d.client;
  const job = await c.createFetch({ manifestUrl: rel.manifestUrl });
  const seen: string[] = [];
  for await (const e of c.fetchEvents(job.id)) {
    seen.push(e.event);
    if (e.event === 'progress' && e.data.held > 0 && !seen.includes('sent')) { seen.push('sent'); await c.cancelFetch(job.id); }
  }
  t.is(seen.at(-1), 'cancelled');
  const st = await c.getFetch(job.id);
  t.is(st.state, 'cancelled');
  t.is(st.error?.code, 'aborted');
  t.true(st.held < rel.size);
  await t.throwsAsync(c.waitFetch(job.id), { code: 'aborted' }, 'waiting on a cancelled fetch ends with its error');
  t.is((await fetch(`${d.api}/api/v1/fetches/${job.id}/events?interval=10`)).status, 400);
});

test('waitFetch hears the end of a fetch at once, not at its next progress tick', async (t) => {
  const { rel, d } = await oneDaemon(t, 4 * MiB, 8 * MiB);
  const c = d.client;
  const job = await c.createFetch({ manifestUrl: rel.manifestUrl });
  const intervalMs = 5000;
  const ticks: number[] = [];
  const s = await c.waitFetch(job.id, { intervalMs, onProgress: () => ticks.push(performance.now()) });
  const heard = performance.now();
  t.is(s.state, 'done');
  // The transfer is short: with progress events 5 s apart, a final event that waited for its
  // tick would come one interval after the first. It comes before: sent the moment the fetch ended.
  t.true(heard - ticks[0]! < intervalMs, `the final event came before the next tick (${Math.round(heard - ticks[0]!)} ms)`);
});
