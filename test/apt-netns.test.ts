/**
 * A site's apt traffic, for real: 4 hosts in their own network namespaces,
 * each with its own shoald (found by mDNS) as its apt proxy, all running the
 * real `apt-get update` and `apt-get install --download-only` of the same
 * packages at once, the archive behind a shaped WAN link. apt succeeds
 * everywhere and the origin serves the indexes and packages once.
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import makeMdns from 'multicast-dns';
import { LocalOrigin } from '../agent-api/local-origin.js';
import { APT_TOOLS, makeAptRepo } from './helpers/apt-repo.js';
import { aptClient } from './helpers/apt-client.js';
import { sha256File, tmpDir } from './helpers/fixtures.js';
import { createTestbed, netnsSupport } from './helpers/netns.js';
import { startShoald } from './helpers/site.js';
import { until } from './helpers/until.js';
import { hasCommand } from './helpers/requires.js';

const MiB = 1 << 20;
const support = netnsSupport();
const missing = [...APT_TOOLS, 'apt-get'].find((b) => !hasCommand(b));
const why = !support.ok ? support.reason : missing ? `${missing} is not installed` : undefined;
const netnsTest = why ? test.serial.skip : test.serial;
if (why) console.log(`apt site tests skipped: ${why}`);

const PACKAGES = [
  { name: 'kernel-image', bytes: 20 * MiB }, { name: 'office', bytes: 12 * MiB }, { name: 'browser', bytes: 9 * MiB },
  ...Array.from({ length: 12 }, (_, i) => ({ name: `lib${i}`, bytes: 700_000 + i * 37_000 })),
];

netnsTest('4 hosts run apt-get update and install through their own shoald at once: apt succeeds everywhere, the origin serves ≤ 1.02 × indexes + packages', async (t) => {
  const tb = createTestbed(4, { wanBitsPerSec: 200e6 });
  t.teardown(() => tb.cleanup());
  const dir = await tmpDir(t);
  const repo = await makeAptRepo(path.join(dir, 'repo'), PACKAGES);
  const origin = new LocalOrigin(repo.root);
  const originUrl = await origin.start(tb.originIp);
  t.teardown(() => origin.stop());
  const daemons = await Promise.all(tb.hosts.map((h, i) => startShoald({
    name: `h${i}`, dir: path.join(dir, `h${i}`), peer: `${h.ip}:7400`, staticPeers: [], netns: h.ns, trustedKeys: [],
    config: { discovery: 'mdns', interfaces: ['eth0'], aptListen: '0.0.0.0:3142', aptKeyrings: [repo.keyring] },
  })));
  t.teardown(() => Promise.all(daemons.map(async (d) => { await d.client.close(); await d.kill('SIGKILL'); })));
  await until(async () => (await Promise.all(daemons.map((d) => d.client.peers()))).every((p) => p.filter((x) => x.healthy).length === 3), 'discovery', 15_000);

  // Machines without shoal find the proxies as _apt_proxy._tcp (what squid-deb-proxy-client browses for).
  const mdns = makeMdns({ interface: tb.originIp, bind: '0.0.0.0', reuseAddr: true, loopback: true });
  t.teardown(() => mdns.destroy());
  const proxies = new Set<string>();
  mdns.on('response', (r: { answers?: Array<{ name: string; type: string; data: unknown }> }) => {
    for (const a of r.answers ?? []) if (a.type === 'PTR' && a.name === '_apt_proxy._tcp.local') proxies.add(String(a.data));
  });
  await until(() => { mdns.query({ questions: [{ name: '_apt_proxy._tcp.local', type: 'PTR' }] }); return proxies.size === 4; }, 'apt proxy adverts', 10_000, 500);

  const total = repo.debs.reduce((s, d) => s + d.size, 0);
  t.true(total >= 50 * MiB && repo.debs.some((d) => d.size > 16 * MiB));
  const clients = await Promise.all(tb.hosts.map((h, i) => aptClient(path.join(dir, `apt${i}`), { repoUrl: `${originUrl}/`, suite: repo.suite, keyring: repo.keyring, proxy: 'http://127.0.0.1:3142/', netns: h.ns })));
  const t0 = Date.now();
  const results = await Promise.all(clients.map(async (c) => {
    const u = await c.run(['update']);
    return { u, i: u.code === 0 ? await c.run(['install', '--download-only', '-y', ...PACKAGES.map((p) => p.name)]) : u };
  }));
  const secs = (Date.now() - t0) / 1000;
  for (const [k, r] of results.entries()) {
    t.is(r.u.code, 0, r.u.out);
    t.is(r.i.code, 0, r.i.out);
    const got = await clients[k]!.archives();
    t.is(got.length, repo.debs.length);
    for (const d of repo.debs) t.is(await sha256File(path.join(clients[k]!.archiveDir, path.basename(d.filename))), await sha256File(path.join(repo.root, d.filename)));
  }
  const dist = path.join(repo.root, 'dists', repo.suite);
  const indexes = (await fs.stat(path.join(dist, 'main/binary-amd64/Packages.xz'))).size + (await fs.stat(path.join(dist, 'InRelease'))).size;
  const served = origin.bytes();
  t.log(`4 hosts, ${(total / MiB).toFixed(1)} MiB of packages in ${secs.toFixed(1)} s; origin served ${(served / MiB).toFixed(2)} MiB = ${(served / (total + indexes)).toFixed(3)} × (indexes + packages)`);
  t.true(served <= 1.02 * (total + indexes), `origin served ${served} bytes for ${total + indexes}`);
});
