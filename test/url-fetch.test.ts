/**
 * Plain URLs with a known SHA-256 (no manifest): four real daemons on loopback
 * fetch one file at once and the origin serves it once; a wrong hash fails and
 * keeps nothing; the local URL form answers Range and HEAD with exact bytes; a
 * peer that serves altered chunks is found by the whole-file proof and banned.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { LocalOrigin } from '../agent-api/local-origin.js';
import { makeFile } from '../bench/lib.js';
import { FakePeer } from './helpers/fake-peer.js';
import { runShoal, sha256File, tmpDir } from './helpers/fixtures.js';
import { parseMetrics, sum } from './helpers/prometheus.js';
import { startShoald, startSite, waitForPeers } from './helpers/site.js';
import { until } from './helpers/until.js';

const MiB = 1 << 20;

async function originWithFile(t: import('ava').ExecutionContext, dir: string, size: number, bytesPerSec = 64 * MiB) {
  await fs.mkdir(path.join(dir, 'origin'), { recursive: true });
  const origin = new LocalOrigin(path.join(dir, 'origin'), { bytesPerSec });
  const base = await origin.start();
  t.teardown(() => origin.stop());
  const file = path.join(dir, 'origin', 'firmware.img');
  await makeFile(file, size);
  return { origin, url: `${base}/firmware.img`, file, sha256: await sha256File(file) };
}

test('four daemons fetch one URL by its SHA-256 at once: the origin serves it once, every copy matches', async (t) => {
  const dir = await tmpDir(t);
  const SIZE = 40 * MiB + 12345;
  const o = await originWithFile(t, dir, SIZE, 32 * MiB);
  const { daemons } = await startSite(t, dir, 4, []);
  await waitForPeers(daemons, 3);
  // Three through the agent API (one without the size: the daemon asks the origin), one through the CLI.
  const jobs = await Promise.all(daemons.slice(0, 3).map((d, i) => d.client.createFetch({ url: o.url, sha256: o.sha256, ...(i ? { size: SIZE } : {}) })));
  const out = path.join(dir, 'out.img');
  const cli = runShoal(['fetch', '--url', o.url, '--sha256', o.sha256.toUpperCase(), '--size', String(SIZE), '-o', out, '--api', daemons[3]!.api]);
  const done = await Promise.all(jobs.map((j, i) => daemons[i]!.client.waitFetch(j.id)));
  const r = await cli;
  t.is(r.code, 0, r.stderr);
  t.is(await sha256File(out), o.sha256);
  for (const s of done) {
    t.is(s.state, 'done');
    t.is(s.kind, 'url');
    t.is(s.size, SIZE);
  }
  t.log(`origin served ${o.origin.bytes('firmware.img')} bytes for a ${SIZE}-byte file; peers: ${done.map((s) => s.bytes.peer).join(', ')}`);
  t.is(o.origin.bytes('firmware.img'), SIZE, 'every byte once per site');
  const m = parseMetrics(await (await fetch(`${daemons[0]!.api}/metrics`)).text());
  t.is(sum(m, 'shoal_download_bytes_total', { kind: 'url' }), SIZE);
  // The local URL form, for any HTTP client: exact ranges, HEAD, and the whole file.
  const local = `${daemons[1]!.api}/sha256/${o.sha256}/firmware.img?url=${encodeURIComponent(o.url)}`;
  const want = await fs.readFile(o.file);
  const ranged = await fetch(local, { headers: { range: 'bytes=4194000-8388700' } });
  t.is(ranged.status, 206);
  t.is(ranged.headers.get('content-range'), `bytes 4194000-8388700/${SIZE}`);
  t.true(Buffer.from(await ranged.arrayBuffer()).equals(want.subarray(4194000, 8388701)));
  const tail = await fetch(local, { headers: { range: 'bytes=-100' } });
  t.true(Buffer.from(await tail.arrayBuffer()).equals(want.subarray(SIZE - 100)));
  const head = await fetch(local, { method: 'HEAD' });
  t.is(head.status, 200);
  t.is(head.headers.get('content-length'), String(SIZE));
  t.is(head.headers.get('accept-ranges'), 'bytes');
  const whole = await fetch(local);
  t.is(createHash('sha256').update(Buffer.from(await whole.arrayBuffer())).digest('hex'), o.sha256);
  const m1 = parseMetrics(await (await fetch(`${daemons[1]!.api}/metrics`)).text());
  t.true(sum(m1, 'shoal_local_bytes_total', { kind: 'url' }) >= SIZE, 'bytes from the cache count as local');
  t.is(o.origin.bytes('firmware.img'), SIZE, 'the local reads cost the origin nothing');
  // The site's savings, gathered from every member: the uplink carried the file once.
  const st = await runShoal(['stats', '--period', '1h', '--json', '--api', daemons[2]!.api]);
  t.is(st.code, 0, st.stderr);
  const stats = JSON.parse(st.stdout) as import('../daemon/admin/api.js').StatsView;
  t.is(stats.peers.filter((p) => p.totals).length, 3);
  t.is(stats.site.url.origin, SIZE);
  t.is(stats.site.url.peer, 3 * SIZE);
  t.true(stats.site.url.local >= SIZE);
  const text = await runShoal(['stats', '--api', daemons[2]!.api]);
  t.regex(text.stdout, /url .* origin +40\.0 MiB .* saved \d+%/);
  const status = await runShoal(['status', '--api', daemons[0]!.api]);
  t.regex(status.stdout, /last 24 h\n +url /);
  t.is((await runShoal(['stats', '--period', 'forever', '--api', daemons[0]!.api])).code, 2);
});

test('a wrong --sha256 fails with blob-mismatch, and nothing is stored', async (t) => {
  const dir = await tmpDir(t);
  const o = await originWithFile(t, dir, 9 * MiB);
  const { daemons } = await startSite(t, dir, 2, []);
  await waitForPeers(daemons, 1);
  const wrong = createHash('sha256').update('not the file').digest('hex');
  const out = path.join(dir, 'out.img');
  const [a, b] = await Promise.all(daemons.map((d) => runShoal(['fetch', '--url', o.url, '--sha256', wrong, '-o', out, '--api', d.api])));
  for (const r of [a!, b!]) {
    t.is(r.code, 11, r.stderr);
    t.regex(r.stderr, /error \[blob-mismatch\]: blob [0-9a-f]{12}: the origin's bytes do not match the SHA-256/);
  }
  await t.throwsAsync(fs.stat(out));
  for (const d of daemons) {
    const st = await d.client.status();
    t.is(st.cache.blobs, 0, `${d.name} keeps nothing`);
    t.is((await fs.readdir(path.join(d.dir, 'cache', 'blobs'))).filter((f) => f.startsWith(wrong)).length, 0);
  }
  // Bad input is a usage error before anything is asked.
  const bad = await runShoal(['fetch', '--url', o.url, '--sha256', 'abc', '-o', out, '--api', daemons[0]!.api]);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--sha256 must be 64 hex characters/);
  const res = await fetch(`${daemons[0]!.api}/sha256/${wrong}?url=ftp://x/y`);
  t.is(res.status, 400);
});

test('a peer that serves altered chunks of a URL blob: the fetch completes with the right bytes and the peer is banned', async (t) => {
  const dir = await tmpDir(t);
  const SIZE = 20 * MiB;
  const o = await originWithFile(t, dir, SIZE);
  // It claims to hold the whole blob and flips a byte in every chunk it sends.
  const evil = new FakePeer('corrupt', { sha256: o.sha256, size: SIZE, chunkSize: 4 * MiB, file: o.file });
  const port = await evil.start();
  t.teardown(() => evil.stop());
  const d = await startShoald({ name: 'd0', dir: path.join(dir, 'd0'), peer: '127.0.0.1:0', staticPeers: [`127.0.0.1:${port}`], trustedKeys: [] });
  t.teardown(() => d.kill('SIGKILL'));
  await until(async () => (await d.client.peers()).some((p) => p.healthy), 'the fake peer admitted', 10_000);
  const job = await d.client.createFetch({ url: o.url, sha256: o.sha256, size: SIZE });
  const s = await d.client.waitFetch(job.id, { signal: AbortSignal.timeout(60_000) }).catch((e) => { t.log(d.logs.slice(-30).join('\n')); throw e; });
  t.is(s.state, 'done');
  t.true(evil.served > 0, 'the liar was asked');
  const peers = await d.client.peers();
  t.true(peers.some((p) => p.id === evil.id && p.banned && /differ from the origin/.test(p.banReason ?? '')), JSON.stringify(peers));
  const body = Buffer.from(await (await fetch(`${d.api}/sha256/${o.sha256}`)).arrayBuffer());
  t.is(createHash('sha256').update(body).digest('hex'), o.sha256);
  t.log(`origin served ${o.origin.bytes('firmware.img')} bytes for ${SIZE} (liar's ${evil.served} chunk(s) read again from the origin)`);
  t.true(o.origin.bytes('firmware.img') <= 2 * SIZE);
});
