/**
 * site: N hosts in network namespaces, found by mDNS only, the origin behind a
 * tbf-shaped WAN link; all fetch one artifact at once. In the same run, N
 * direct downloads (curl inside each namespace) over the same link.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { LocalOrigin } from '../agent-api/local-origin.js';
import { createTestbed, netnsSupport } from '../test/helpers/netns.js';
import { makeRelease } from '../test/helpers/release.js';
import { startShoald, type RunningDaemon } from '../test/helpers/site.js';
import { fmt, MiB, tempDir } from './lib.js';

export async function benchSite(): Promise<void> {
  const support = netnsSupport();
  if (!support.ok) { console.log(`site: skipped (${support.reason})`); return; }
  const N = Number(process.env.BENCH_N ?? 8);
  const SIZE = Number(process.env.BENCH_SITE_BYTES ?? 128 * MiB);
  const WAN_BITS = Number(process.env.BENCH_WAN_BITS ?? 100e6);
  const tb = createTestbed(N, { wanBitsPerSec: WAN_BITS });
  const dir = await tempDir('site');
  const daemons: RunningDaemon[] = [];
  const origin = new LocalOrigin(path.join(dir, 'www'));
  try {
    const url = await origin.start(tb.originIp);
    const rel = await makeRelease(path.join(dir, 'www'), url, { size: SIZE, chunkSize: 4 * MiB });
    const ideal = (SIZE * 8 * 1000) / WAN_BITS;
    daemons.push(...(await Promise.all(tb.hosts.map((h, i) => startShoald({
      name: `h${i}`, dir: path.join(dir, `h${i}`), peer: `${h.ip}:7400`, staticPeers: [], netns: h.ns, trustedKeys: rel.trusted,
      // BENCH_SITE_SECRET: a private site (peer links TLS 1.3 with the site's PSK).
      config: { discovery: 'mdns', interfaces: ['eth0'], logLevel: 'warn', ...(process.env.BENCH_SITE_SECRET ? { siteSecret: process.env.BENCH_SITE_SECRET } : {}) },
    })))));
    const ready = performance.now();
    for (;;) {
      const counts = await Promise.all(daemons.map(async (d) => (await d.client.peers()).filter((p) => p.healthy).length));
      if (counts.every((c) => c === N - 1)) break;
      if (performance.now() - ready > 30_000) throw new Error(`discovery incomplete: ${counts.join(',')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const discoveryMs = performance.now() - ready;

    const t0 = performance.now();
    await Promise.all(daemons.map(async (d) => d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id, { intervalMs: 50 })));
    const shoalMs = performance.now() - t0;
    const shoalOrigin = origin.bytes(rel.rel);
    // What went wrong along the way, if anything: the daemons' warnings, counted by message.
    const warnings = new Map<string, number>();
    for (const d of daemons) for (const l of d.logs) {
      const m = /"level":"warn","msg":"([^"]*)"(?:.*"reason":"([^"]{0,60}))?/.exec(l);
      if (m) warnings.set(`${m[1]}${m[2] ? `: ${m[2]}` : ''}`, (warnings.get(`${m[1]}${m[2] ? `: ${m[2]}` : ''}`) ?? 0) + 1);
    }

    origin.bytesByPath.clear();
    const t1 = performance.now();
    await Promise.all(tb.hosts.map((h) => new Promise<void>((resolve, reject) => {
      const p = spawn('ip', ['netns', 'exec', h.ns, 'curl', '-sf', '-o', '/dev/null', `${url}/${rel.rel}`], { stdio: 'ignore' });
      p.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`curl in ${h.ns} exited ${c}`))));
    })));
    const directMs = performance.now() - t1;
    const directOrigin = origin.bytes(rel.rel);

    console.log(`site: ${N} hosts in network namespaces, mDNS discovery only, ${SIZE / MiB} MiB, WAN ${WAN_BITS / 1e6} Mbit/s (size/rate = ${fmt(ideal / 1000)} s)${process.env.BENCH_SITE_SECRET ? '; a private site (TLS 1.3 PSK links)' : '; an open site'}`);
    console.log(`                          origin bytes ÷ size   time until all hold it ÷ (size ÷ WAN)`);
    console.log(`  shoal (${N} daemons)       ${fmt(shoalOrigin / SIZE).padStart(8)}              ${fmt(shoalMs / ideal).padStart(8)}   (${fmt(shoalMs / 1000)} s; targets 1.00 and ≤ 1.30)`);
    console.log(`  ${N} direct downloads     ${fmt(directOrigin / SIZE).padStart(8)}              ${fmt(directMs / ideal).padStart(8)}   (${fmt(directMs / 1000)} s)`);
    console.log(`  time to discover all peers after start-up: ${fmt(discoveryMs / 1000)} s (target ≤ 2 s)`);
    if (warnings.size) console.log(`  daemon warnings during the shoal run: ${[...warnings].map(([k, v]) => `${k} ×${v}`).join('; ')}`);
  } finally {
    await Promise.all(daemons.map(async (d) => { await d.client.close(); await d.kill('SIGKILL'); }));
    await origin.stop();
    tb.cleanup();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
