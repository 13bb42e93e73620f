/**
 * oci: 8 hosts in network namespaces (WAN 100 Mbit/s to the registry, every
 * host's own link capped at 1 Gbit/s both ways) pull one multi-layer image at
 * once with the real skopeo from a real registry (docker-registry, token
 * flow). In the same run: through each host's own shoald as its mirror, and
 * straight from the registry. Prints registry egress ÷ image size and
 * time ÷ (size ÷ WAN).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { createTestbed, netnsSupport } from '../test/helpers/netns.js';
import { OCI_TOOLS, buildImage, pushImage, skopeoPull, startRegistry, writeRegistriesConf } from '../test/helpers/oci.js';
import { startShoald, type RunningDaemon } from '../test/helpers/site.js';
import { cpuSeconds, fmt, MiB, tempDir } from './lib.js';
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** System (kernel) CPU seconds of a live process: its socket and disk work, and here the simulated LAN's. */
function systemSeconds(pid: number | undefined): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[12]) / 100;
}

/** CPU seconds the whole machine has been busy (not idle or waiting for I/O), from /proc/stat. */
function machineCpu(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const busy = f.reduce((a, x) => a + x, 0) - f[3]! - f[4]!;
  return busy / 100;
}
import { promises as fs } from 'node:fs';

export async function benchOci(): Promise<void> {
  const support = netnsSupport();
  if (!support.ok) { console.log(`oci: skipped (${support.reason})`); return; }
  const missing = OCI_TOOLS.find((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
  if (missing) { console.log(`oci: skipped (${missing} is not installed)`); return; }
  const N = Number(process.env.BENCH_N ?? 8);
  const TOTAL = Number(process.env.BENCH_OCI_BYTES ?? 160 * MiB);
  const WAN_BITS = Number(process.env.BENCH_WAN_BITS ?? 100e6);
  const tb = createTestbed(N, { wanBitsPerSec: WAN_BITS, lanBitsPerSec: 1e9 });
  const dir = await tempDir('oci');
  const daemons: RunningDaemon[] = [];
  const reg = await startRegistry(path.join(dir, 'registry'), { listen: tb.originIp, token: true });
  try {
    // One big layer, a few middling ones and a small top layer, as an application image looks.
    const img = await buildImage(path.join(dir, 'img'), 'v1', [0.55, 0.2, 0.12, 0.08, 0.04, 0.01].map((f) => Math.round(TOTAL * f)));
    await pushImage(img, reg.host, 'fleet/app');
    const ref = `${reg.host}/fleet/app@${img.digest}`;
    const ideal = (img.size * 8 * 1000) / WAN_BITS;
    const run = async (label: string, conf: string) => {
      const before = reg.egress();
      const cpu0 = machineCpu();
      const live = () => daemons.filter((d) => d.proc.exitCode === null);
      const d0 = live().reduce((a, d) => a + cpuSeconds(d.proc.pid), 0);
      const s0 = live().reduce((a, d) => a + systemSeconds(d.proc.pid), 0);
      const t0 = performance.now();
      // When the registry had sent (nearly) the whole image: the WAN phase, against the rest.
      let wanDone = NaN;
      const profile: number[] = [];
      let last = before;
      const sampler = setInterval(() => { if (process.env.BENCH_PROFILE && profile.length < 600 && performance.now() - t0 >= profile.length * 500) { profile.push(reg.egress() - last); last = reg.egress(); } if (Number.isNaN(wanDone) && reg.egress() - before >= 0.99 * img.size) wanDone = performance.now() - t0; }, 100);
      const pulls = await Promise.all(tb.hosts.map((h, i) => skopeoPull(ref, path.join(dir, `${label}-${i}`), conf, { netns: h.ns, timeoutMs: 600_000 })));
      const ms = performance.now() - t0;
      clearInterval(sampler);
      const cpu = machineCpu() - cpu0;
      const daemonCpu = live().reduce((a, d) => a + cpuSeconds(d.proc.pid), 0) - d0;
      const daemonSys = live().reduce((a, d) => a + systemSeconds(d.proc.pid), 0) - s0;
      if (process.env.BENCH_PROFILE) console.log(`  ${label}: MiB per 0.5 s: ${profile.map((b) => fmt(b / MiB, 1)).join(' ')}`);
      for (const p of pulls) if (p.digest !== img.digest) throw new Error(`${label}: pulled ${p.digest}, not ${img.digest}`);
      await Promise.all(tb.hosts.map((_, i) => fs.rm(path.join(dir, `${label}-${i}`), { recursive: true, force: true })));
      return { ms, wanDone, cpu, daemonCpu, daemonSys, egress: reg.egress() - before, slowest: Math.max(...pulls.map((p) => p.ms)), fastest: Math.min(...pulls.map((p) => p.ms)) };
    };

    daemons.push(...(await Promise.all(tb.hosts.map((h, i) => startShoald({
      name: `h${i}`, dir: path.join(dir, `h${i}`), peer: `${h.ip}:7400`, staticPeers: [], netns: h.ns, trustedKeys: [],
      config: { discovery: 'mdns', interfaces: ['eth0'], logLevel: process.env.BENCH_LOG_LEVEL ?? 'warn', ociListen: '127.0.0.1:7402', ociRegistries: [{ host: reg.host, url: reg.url }] },
    })))));
    for (const t0 = performance.now(); ;) {
      const counts = await Promise.all(daemons.map(async (d) => (await d.client.peers()).filter((p) => p.healthy).length));
      if (counts.every((c) => c === N - 1)) break;
      if (performance.now() - t0 > 30_000) throw new Error(`discovery incomplete: ${counts.join(',')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const viaShoal = path.join(dir, 'shoal.conf');
    const direct = path.join(dir, 'direct.conf');
    await writeRegistriesConf(viaShoal, reg.host, '127.0.0.1:7402');
    await writeRegistriesConf(direct, reg.host);
    const shoal = await run('shoal', viaShoal);
    if (process.env.BENCH_LOG_FILE) await fs.writeFile(process.env.BENCH_LOG_FILE, daemons.flatMap((d) => d.logs.map((l) => `${d.name} ${l}`)).join('\n'));
    await Promise.all(daemons.map((d) => d.kill('SIGTERM')));
    console.log(`  (shoal: ${fmt(shoal.ms / 1000)} s, registry egress ${fmt(shoal.egress / img.size, 3)} ×, 99 % of the image through the WAN after ${fmt(shoal.wanDone / 1000)} s;`);
    console.log(`   CPU: the machine's ${os.cpus().length} cores busy ${fmt(shoal.cpu)} s of ${fmt((os.cpus().length * shoal.ms) / 1000)}, the ${N} daemons ${fmt(shoal.daemonCpu)} s, of it in the kernel ${fmt(shoal.daemonSys)} s)`);
    const plain = await run('direct', direct);
    console.log(`oci: ${N} hosts pull one image (${img.layers.length} layers, ${fmt(img.size / MiB)} MiB) with skopeo at once;`);
    console.log(`     WAN ${WAN_BITS / 1e6} Mbit/s (size/rate = ${fmt(ideal / 1000)} s), every host's link 1 Gbit/s`);
    console.log(`                                  registry egress ÷ size   time ÷ (size ÷ WAN)   first … last pull`);
    for (const [name, r] of [[`shoal (a shoald on each host)`, shoal], [`${N} direct`, plain]] as const) {
      console.log(`  ${name.padEnd(30)} ${fmt(r.egress / img.size).padStart(10)}              ${fmt(r.ms / ideal).padStart(8)}          ${fmt(r.fastest / 1000)} … ${fmt(r.slowest / 1000)} s`);
    }
    console.log(`  shoal targets: 1.00 and ≤ 1.3; shoal ÷ direct time: ${fmt(shoal.ms / plain.ms)}`);
  } finally {
    await Promise.all(daemons.map(async (d) => { await d.client.close(); await d.kill('SIGKILL'); }));
    await reg.stop();
    tb.cleanup();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
