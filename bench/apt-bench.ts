/**
 * apt: 8 hosts in network namespaces (WAN 100 Mbit/s to the archive, every
 * host's own link capped at 1 Gbit/s both ways) run the real `apt-get update`
 * and `apt-get install --download-only` of the same packages at once. In the
 * same run: through each host's own shoald, straight from the archive, and
 * through one central apt-cacher-ng (in a ninth namespace, on the same kind
 * of link) that all 8 use. Prints origin bytes ÷ payload and time ÷ (payload ÷ WAN).
 */
import { spawn, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { LocalOrigin } from '../agent-api/local-origin.js';
import { aptClient } from '../test/helpers/apt-client.js';
import { makeAptRepo } from '../test/helpers/apt-repo.js';
import { createTestbed, netnsSupport, type Host } from '../test/helpers/netns.js';
import { startShoald, type RunningDaemon } from '../test/helpers/site.js';
import { fmt, MiB, tempDir } from './lib.js';

export async function benchApt(): Promise<void> {
  const support = netnsSupport();
  if (!support.ok) { console.log(`apt: skipped (${support.reason})`); return; }
  for (const b of ['apt-get', 'apt-ftparchive', 'gpgv', '/usr/sbin/apt-cacher-ng']) {
    if (spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0) { console.log(`apt: skipped (${b} is not installed)`); return; }
  }
  const N = Number(process.env.BENCH_N ?? 8);
  const TOTAL = Number(process.env.BENCH_APT_BYTES ?? 96 * MiB);
  const WAN_BITS = Number(process.env.BENCH_WAN_BITS ?? 100e6);
  const tb = createTestbed(N + 1, { wanBitsPerSec: WAN_BITS, lanBitsPerSec: 1e9 });
  const [hosts, central] = [tb.hosts.slice(0, N), tb.hosts[N]!];
  const dir = await tempDir('apt');
  const daemons: RunningDaemon[] = [];
  let acng: ReturnType<typeof spawn> | undefined;
  try {
    // A few large packages and many small ones, as an update of a desktop looks.
    const big = [0.3, 0.2, 0.12].map((f, i) => ({ name: `big${i}`, bytes: Math.round(TOTAL * f) }));
    const rest = TOTAL - big.reduce((s, p) => s + p.bytes, 0);
    const packages = [...big, ...Array.from({ length: 30 }, (_, i) => ({ name: `pkg${i}`, bytes: Math.round(rest / 30) }))];
    const repo = await makeAptRepo(path.join(dir, 'repo'), packages);
    const origin = new LocalOrigin(repo.root);
    const url = await origin.start(tb.originIp);
    try {
      const names = packages.map((p) => p.name);
      const payload = repo.debs.reduce((s, d) => s + d.size, 0) + (await fs.stat(path.join(repo.root, 'dists', repo.suite, 'main/binary-amd64/Packages.xz'))).size;
      const ideal = (payload * 8 * 1000) / WAN_BITS;
      const run = async (label: string, proxy: (h: Host, i: number) => string | undefined) => {
        origin.bytesByPath.clear();
        const clients = await Promise.all(hosts.map((h, i) => aptClient(path.join(dir, `${label}-${i}`), { repoUrl: `${url}/`, suite: repo.suite, keyring: repo.keyring, netns: h.ns, ...(proxy(h, i) ? { proxy: proxy(h, i)! } : {}) })));
        const t0 = performance.now();
        // BENCH_PROFILE=1: origin bytes per 0.5 s, to see where the WAN idles.
        const profile: number[] = [];
        let last = 0;
        const sampler = process.env.BENCH_PROFILE ? setInterval(() => { profile.push(origin.bytes() - last); last = origin.bytes(); }, 500) : undefined;
        await Promise.all(clients.map(async (c) => {
          let log = '';
          for (const args of [['update'], ['install', '--download-only', '-y', ...names]]) {
            const r = await c.run(args);
            log += r.out;
            if (r.code !== 0) throw new Error(`${label}: apt-get ${args[0]} failed: ${log.replace(/E: Unable to locate package .*\n/g, '').slice(-3000)}`);
          }
          if ((await c.archives()).length !== repo.debs.length) throw new Error(`${label}: not every .deb arrived`);
        }));
        clearInterval(sampler);
        if (sampler) console.log(`  ${label}: origin MiB per 0.5 s: ${profile.map((b) => fmt(b / MiB, 1)).join(' ')}`);
        return { ms: performance.now() - t0, origin: origin.bytes() };
      };

      daemons.push(...(await Promise.all(hosts.map((h, i) => startShoald({
        name: `h${i}`, dir: path.join(dir, `h${i}`), peer: `${h.ip}:7400`, staticPeers: [], netns: h.ns, trustedKeys: [],
        config: { discovery: 'mdns', interfaces: ['eth0'], logLevel: process.env.BENCH_LOG_LEVEL ?? 'warn', aptListen: '127.0.0.1:3142', aptKeyrings: [repo.keyring] },
      })))));
      for (const t0 = performance.now(); ;) {
        const counts = await Promise.all(daemons.map(async (d) => (await d.client.peers()).filter((p) => p.healthy).length));
        if (counts.every((c) => c === N - 1)) break;
        if (performance.now() - t0 > 30_000) throw new Error(`discovery incomplete: ${counts.join(',')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const shoal = await run('shoal', () => 'http://127.0.0.1:3142/');
      if (process.env.BENCH_LOG_FILE) await fs.writeFile(process.env.BENCH_LOG_FILE, daemons.flatMap((d) => d.logs.map((l) => `${d.name} ${l}`)).join('\n'));
      await Promise.all(daemons.map((d) => d.kill('SIGTERM')));

      const direct = await run('direct', () => undefined);

      const acngDir = path.join(dir, 'acng');
      await fs.mkdir(path.join(acngDir, 'cache'), { recursive: true });
      await fs.mkdir(path.join(acngDir, 'log'), { recursive: true });
      spawnSync('chown', ['-R', 'apt-cacher-ng', acngDir]);
      acng = spawn('ip', ['netns', 'exec', central.ns, '/usr/sbin/apt-cacher-ng', '-c', '/etc/apt-cacher-ng', 'ForeGround=1', `CacheDir=${acngDir}/cache`, `LogDir=${acngDir}/log`, 'Port=3142', `BindAddress=${central.ip}`, `AllowUserPorts=${new URL(url).port}`], { stdio: 'ignore' });
      for (const t0 = performance.now(); spawnSync('ip', ['netns', 'exec', hosts[0]!.ns, 'bash', '-c', `exec 3<>/dev/tcp/${central.ip}/3142`]).status !== 0;) {
        if (performance.now() - t0 > 10_000) throw new Error('apt-cacher-ng did not start');
        await new Promise((r) => setTimeout(r, 100));
      }
      // Asked once for a file the archive lacks: apt-cacher-ng then talks to the origin (its first request right after start-up can fail).
      await new Promise((r) => setTimeout(r, 1000));
      spawnSync('ip', ['netns', 'exec', hosts[0]!.ns, 'curl', '-s', '-o', '/dev/null', '-x', `http://${central.ip}:3142`, `${url}/dists/warmup/InRelease`]);
      // Not fatal: the shoal and direct rows still print, with why the central box did not finish.
      const box = await run('acng', () => `http://${central.ip}:3142/`).catch((e: Error) => ({ ms: NaN, origin: NaN, error: e.message.split('\n').find((l) => /^(W|E):/.test(l)) ?? e.message.slice(0, 200) }));
      console.log(`apt: ${N} hosts run apt-get update + install --download-only of ${repo.debs.length} packages (${fmt(payload / MiB)} MiB with the index) at once;`);
      console.log(`     WAN ${WAN_BITS / 1e6} Mbit/s (payload/rate = ${fmt(ideal / 1000)} s), every host's link 1 Gbit/s`);
      console.log(`                                  origin bytes ÷ payload   time ÷ (payload ÷ WAN)`);
      for (const [name, r] of [[`shoal (a shoald on each host)`, shoal], [`${N} direct`, direct], ['one central apt-cacher-ng', box]] as const) {
        if ('error' in r) { console.log(`  ${name.padEnd(30)} did not finish: ${r.error}`); continue; }
        console.log(`  ${name.padEnd(30)} ${fmt(r.origin / payload).padStart(10)}              ${fmt(r.ms / ideal).padStart(8)}   (${fmt(r.ms / 1000)} s)`);
      }
      console.log(`  shoal targets: 1.00 and ≤ 1.3${'error' in box ? '' : `; shoal ÷ apt-cacher-ng time: ${fmt(shoal.ms / box.ms)}`}`);
    } finally {
      await origin.stop();
    }
  } finally {
    acng?.kill('SIGTERM');
    await Promise.all(daemons.map(async (d) => { await d.client.close(); await d.kill('SIGKILL'); }));
    tb.cleanup();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
