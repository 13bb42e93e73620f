/**
 * The apt proxy with the real apt-get, on loopback: two daemons' machines run
 * `apt-get update` and `apt-get install --download-only` at once through their
 * own daemon; apt succeeds, every .deb matches the archive, and the origin
 * serves each index and .deb once. A repository update is picked up at once;
 * a suite whose Release cannot be verified is passed through, never shared.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { LocalOrigin } from '../agent-api/local-origin.js';
import { APT_TOOLS, addDeb, makeAptRepo, writeIndexes, type AptRepo } from './helpers/apt-repo.js';
import { aptClient } from './helpers/apt-client.js';
import { ROOT, sha256File, tmpDir } from './helpers/fixtures.js';
import { parseMetrics, sum } from './helpers/prometheus.js';
import { requires, hasCommand } from './helpers/requires.js';
import { startShoald, startSite, waitForPeers } from './helpers/site.js';
import { until } from './helpers/until.js';
import { FakePeer } from './helpers/fake-peer.js';
import { CA_CHUNK_SIZE } from '../daemon/frontends/content.js';

const MiB = 1 << 20;
const missing = [...APT_TOOLS, 'apt-get'].find((b) => !hasCommand(b));
const aptTest = requires(missing ? `${missing} is not installed (apt-get install apt apt-utils gpg gpgv xz-utils dpkg)` : undefined);

const PACKAGES = [{ name: 'big', bytes: 17 * MiB }, { name: 'mid', bytes: 6 * MiB }, { name: 'small', bytes: 300_000 }, { name: 'tiny', bytes: 20_000 }];

async function setup(t: import('ava').ExecutionContext, n: number, daemonConfig: (repo: AptRepo) => Record<string, unknown>) {
  const dir = await tmpDir(t);
  const repo = await makeAptRepo(path.join(dir, 'repo'), PACKAGES);
  const origin = new LocalOrigin(repo.root, { bytesPerSec: 48 * MiB });
  const originUrl = await origin.start();
  t.teardown(() => origin.stop());
  const { daemons } = await startSite(t, dir, n, [], daemonConfig(repo));
  await waitForPeers(daemons, n - 1);
  return { dir, repo, origin, originUrl, daemons };
}

/** What apt fetches of the archive, once: its .debs and the one Packages index it picks, plus each daemon's own InRelease. */
async function payload(repo: AptRepo, n: number) {
  const dist = path.join(repo.root, 'dists', repo.suite);
  const xz = (await fs.stat(path.join(dist, 'main/binary-amd64/Packages.xz'))).size;
  const inRelease = (await fs.stat(path.join(dist, 'InRelease'))).size;
  return { debs: repo.debs.reduce((s, d) => s + d.size, 0), indexes: xz, releases: n * inRelease };
}

async function checkArchives(t: import('ava').ExecutionContext, repo: AptRepo, dir: string) {
  const got = (await fs.readdir(dir)).filter((f) => f.endsWith('.deb')).sort();
  t.deepEqual(got, repo.debs.map((d) => path.basename(d.filename)).sort());
  for (const d of repo.debs) t.is(await sha256File(path.join(dir, path.basename(d.filename))), await sha256File(path.join(repo.root, d.filename)), d.filename);
}

aptTest('two machines run apt-get update and install through their own daemon at once: apt succeeds, the origin serves each file once', async (t) => {
  const { dir, repo, origin, originUrl, daemons } = await setup(t, 2, (r) => ({ aptKeyrings: [r.keyring] }));
  const clients = await Promise.all(daemons.map((d, i) => aptClient(path.join(dir, `apt${i}`), { repoUrl: `${originUrl}/`, suite: repo.suite, keyring: repo.keyring, proxy: `http://127.0.0.1:${d.aptPort}/` })));
  const names = PACKAGES.map((p) => p.name);
  const results = await Promise.all(clients.map(async (c) => {
    const u = await c.run(['update']);
    const i = u.code === 0 ? await c.run(['install', '--download-only', '-y', ...names]) : u;
    return { u, i };
  }));
  for (const [k, r] of results.entries()) {
    t.is(r.u.code, 0, r.u.out);
    t.is(r.i.code, 0, r.i.out);
    await checkArchives(t, repo, clients[k]!.archiveDir);
  }
  const p = await payload(repo, 2);
  const served = origin.bytes();
  t.log(`origin served ${served} bytes; payload ${p.debs + p.indexes} (+ ${p.releases} of InRelease, one per daemon): ${(served / (p.debs + p.indexes + p.releases)).toFixed(3)} ×`);
  t.true(served <= 1.02 * (p.debs + p.indexes) + p.releases, `origin served ${served}`);
  const m = await Promise.all(daemons.map(async (d) => parseMetrics(await (await fetch(`${d.api}/metrics`)).text())));
  const apt = m.map((x) => sum(x, 'shoal_download_bytes_total', { kind: 'apt' }));
  t.true(apt.every((b) => b >= p.debs), `apt bytes by daemon: ${apt.join(', ')}`);
  t.is(m.reduce((s, x) => s + sum(x, 'shoal_download_bytes_total', { kind: 'apt', source: 'origin' }), 0), p.debs + p.indexes);

  // The repository moves on: a new version of one package, new indexes, a new Release.
  await addDeb(repo, 'mid', '2.0', 5 * MiB);
  await fs.rm(path.join(repo.root, 'pool/main/mid_1.0_all.deb'));
  await writeIndexes(repo);
  const again = clients[1]!;
  for (const f of await again.archives()) await fs.rm(path.join(again.archiveDir, f));
  const u2 = await again.run(['update']);
  t.is(u2.code, 0, u2.out);
  const i2 = await again.run(['install', '--download-only', '-y', ...names]);
  t.is(i2.code, 0, i2.out);
  await checkArchives(t, repo, again.archiveDir);
});

aptTest('the path form needs no proxy setting; a suite whose Release does not verify is passed through and never shared', async (t) => {
  // No keyring for this archive: the daemon cannot check its Release.
  const { dir, repo, origin, originUrl, daemons } = await setup(t, 1, () => ({ aptKeyrings: [] }));
  const d = daemons[0]!;
  const host = new URL(originUrl).host;
  const c = await aptClient(path.join(dir, 'apt'), { repoUrl: `http://127.0.0.1:${d.aptPort}/${host}/`, suite: repo.suite, keyring: repo.keyring });
  const u = await c.run(['update']);
  t.is(u.code, 0, u.out);
  const i = await c.run(['install', '--download-only', '-y', 'small', 'tiny']);
  t.is(i.code, 0, i.out);
  t.true(d.logs.some((l) => l.includes('Release not verified')), 'the daemon says why it does not share');
  const m = parseMetrics(await (await fetch(`${d.api}/metrics`)).text());
  t.is(sum(m, 'shoal_download_bytes_total', { kind: 'apt' }), 0, 'nothing was taken into the shared cache');
  t.true(sum(m, 'shoal_unshared_bytes_total', { kind: 'apt' }) > 0);
  t.true(origin.bytes() > 0);
  // Nonsense and loops are refused with a clear answer.
  const r = await fetch(`http://127.0.0.1:${d.aptPort}/not a host/x`);
  t.is(r.status, 400);
  const loop = await fetch(`http://127.0.0.1:${d.aptPort}/127.0.0.1:${d.aptPort}/x`);
  t.is(loop.status, 400);
});

aptTest('peers that serve a corrupted .deb and a forged Packages index: apt still succeeds, nothing bad is cached or served, both are banned', async (t) => {
  const dir = await tmpDir(t);
  const repo = await makeAptRepo(path.join(dir, 'repo'), PACKAGES);
  const origin = new LocalOrigin(repo.root, { bytesPerSec: 48 * MiB });
  const originUrl = await origin.start();
  t.teardown(() => origin.stop());
  const xzPath = path.join(repo.root, 'dists', repo.suite, 'main/binary-amd64/Packages.xz');
  const big = repo.debs.find((d) => d.name === 'big')!;
  // Each claims to hold its whole blob and alters a byte of every chunk it sends.
  const liars = await Promise.all([xzPath, path.join(repo.root, big.filename)].map(async (file) => {
    const st = await fs.stat(file);
    const p = new FakePeer('corrupt', { sha256: await sha256File(file), size: st.size, chunkSize: CA_CHUNK_SIZE, file });
    const port = await p.start();
    t.teardown(() => p.stop());
    return { p, port };
  }));
  const d = await startShoald({ name: 'd0', dir: path.join(dir, 'd0'), peer: '127.0.0.1:0', staticPeers: liars.map((l) => `127.0.0.1:${l.port}`), trustedKeys: [], config: { aptKeyrings: [repo.keyring] } });
  t.teardown(() => d.kill('SIGKILL'));
  await until(async () => (await d.client.peers()).filter((p) => p.healthy).length === 2, 'both liars admitted', 10_000);
  const c = await aptClient(path.join(dir, 'apt'), { repoUrl: `${originUrl}/`, suite: repo.suite, keyring: repo.keyring, proxy: `http://127.0.0.1:${d.aptPort}/` });
  const u = await c.run(['update']);
  t.is(u.code, 0, u.out);
  const i = await c.run(['install', '--download-only', '-y', ...PACKAGES.map((p) => p.name)]);
  t.is(i.code, 0, i.out);
  await checkArchives(t, repo, c.archiveDir);
  for (const l of liars) t.true(l.p.served > 0, 'the liar was asked');
  const peers = await d.client.peers();
  t.is(peers.filter((p) => p.banned && /differ from the origin/.test(p.banReason ?? '')).length, 2, JSON.stringify(peers));
  // What the daemon holds is the archive's bytes: asked again, the cached .deb is served as is.
  const again = await fetch(`http://127.0.0.1:${d.aptPort}/${new URL(originUrl).host}/${big.filename}`);
  t.is(createHash('sha256').update(Buffer.from(await again.arrayBuffer())).digest('hex'), await sha256File(path.join(repo.root, big.filename)));
});

aptTest('the Proxy-Auto-Detect helper sends apt through shoald while it runs, and DIRECT (apt still works) once it is stopped', async (t) => {
  const { dir, repo, origin, originUrl, daemons } = await setup(t, 1, (r) => ({ aptKeyrings: [r.keyring] }));
  const d = daemons[0]!;
  const helper = path.join(ROOT, 'systemd/apt-proxy-detect');
  const ask = () => {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(helper, [`${originUrl}/dists/stable/InRelease`], { env: { ...process.env, SHOAL_APT_PORT: String(d.aptPort) }, encoding: 'utf8' });
    return { out: r.stdout.trim(), ms: Number(process.hrtime.bigint() - t0) / 1e6 };
  };
  const up = ask();
  t.is(up.out, `http://127.0.0.1:${d.aptPort}/`);
  t.log(`helper answered in ${up.ms.toFixed(0)} ms with shoald up`);
  process.env.SHOAL_APT_PORT = String(d.aptPort);
  t.teardown(() => { delete process.env.SHOAL_APT_PORT; });
  const c = await aptClient(path.join(dir, 'apt'), { repoUrl: `${originUrl}/`, suite: repo.suite, keyring: repo.keyring, autoDetect: helper });
  t.is((await c.run(['update'])).code, 0);
  const i = await c.run(['install', '--download-only', '-y', 'small', 'tiny']);
  t.is(i.code, 0, i.out);
  const m = parseMetrics(await (await fetch(`${d.api}/metrics`)).text());
  t.true(sum(m, 'shoal_download_bytes_total', { kind: 'apt' }) > 0, 'apt went through shoald');
  await d.kill('SIGTERM');
  const down = ask();
  t.is(down.out, 'DIRECT');
  t.true(down.ms < 1000, `helper took ${down.ms} ms with shoald down`);
  const before = origin.bytes();
  for (const f of await c.archives()) await fs.rm(path.join(c.archiveDir, f));
  const u2 = await c.run(['update']);
  t.is(u2.code, 0, u2.out);
  const i2 = await c.run(['install', '--download-only', '-y', 'mid']);
  t.is(i2.code, 0, i2.out);
  t.deepEqual(await c.archives(), ['mid_1.0_all.deb']);
  t.true(origin.bytes() - before >= 6 * MiB, 'straight from the origin');
});

aptTest('after a restart the daemon still knows its suites: apt install without apt-get update is answered from the cache, nothing passes through', async (t) => {
  const { dir, repo, origin, originUrl, daemons } = await setup(t, 1, (r) => ({ aptKeyrings: [r.keyring] }));
  const first = daemons[0]!;
  const c = await aptClient(path.join(dir, 'apt'), { repoUrl: `${originUrl}/`, suite: repo.suite, keyring: repo.keyring, proxy: `http://127.0.0.1:${first.aptPort}/` });
  t.is((await c.run(['update'])).code, 0);
  t.is((await c.run(['install', '--download-only', '-y', 'big', 'small'])).code, 0);
  await first.kill('SIGTERM');
  const d = await startShoald({ name: 'again', dir: first.dir, peer: first.peer, staticPeers: [], trustedKeys: [], config: { aptKeyrings: [repo.keyring], aptListen: `127.0.0.1:${first.aptPort}` } });
  t.teardown(() => d.kill('SIGKILL'));
  for (const f of await c.archives()) await fs.rm(path.join(c.archiveDir, f));
  const before = origin.bytes();
  const i = await c.run(['install', '--download-only', '-y', 'big', 'small']);
  t.is(i.code, 0, i.out);
  t.deepEqual(await c.archives(), ['big_1.0_all.deb', 'small_1.0_all.deb']);
  const m = parseMetrics(await (await fetch(`${d.api}/metrics`)).text());
  t.is(sum(m, 'shoal_unshared_bytes_total', { kind: 'apt' }), 0, 'nothing passed through');
  t.true(sum(m, 'shoal_local_bytes_total', { kind: 'apt' }) >= 17 * MiB, 'answered from the cache');
  t.is(origin.bytes(), before, 'the origin was not asked');
});
