/**
 * Site benchmarks with real shoald processes on loopback, each with its
 * baseline run side by side in the same run:
 * - swarm: N daemons vs N direct downloads from one rate-limited origin;
 * - fanout: N daemons fetching what one of them already holds vs N downloads from one server;
 * - throughput: one daemon fetching from one peer vs curl from nginx;
 * - memory: peak RSS of both daemons as the artifact grows.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createReadStream, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseMetrics, sum } from '../test/helpers/prometheus.js';
import { originWithRelease, type Release } from '../test/helpers/release.js';
import { peerAddresses, startShoald, startSite, waitForPeers, type RunningDaemon } from '../test/helpers/site.js';
import { cpuSeconds, fmt, median, MiB, tempDir, timeCommand, timeCommandCpu } from './lib.js';
import { socketTransfer } from './socket-floor.js';

type Teardown = { teardown(fn: () => unknown): void; run(): Promise<void> };

function teardowns(): Teardown {
  const fns: Array<() => unknown> = [];
  return { teardown: (fn) => { fns.push(fn); }, run: async () => { for (const f of fns.reverse()) await f(); } };
}

/** Runs `fn` with a scratch directory and teardowns, and cleans both up whatever happens. */
async function inScratch(name: string, fn: (dir: string, td: Teardown) => Promise<void>): Promise<void> {
  const dir = await tempDir(name);
  const td = teardowns();
  try {
    await fn(dir, td);
  } finally {
    await td.run();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** The baseline of the site benchmarks: `n` plain curl downloads of `url` at once; wall ms. */
async function directDownloads(n: number, url: string, dir: string): Promise<number> {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => timeCommand('curl', ['-sf', '-o', path.join(dir, `direct${i}`), url])));
  return performance.now() - t0;
}

/** Peak resident set (VmHWM) of a live process, in MiB. */
export function peakRssMiB(pid: number | undefined): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function fetchOn(daemons: RunningDaemon[], manifestUrl: string): Promise<number> {
  const t0 = performance.now();
  const jobs = await Promise.all(daemons.map((d) => d.client.createFetch({ manifestUrl })));
  await Promise.all(daemons.map((d, i) => d.client.waitFetch(jobs[i]!.id, { intervalMs: 50 })));
  return performance.now() - t0;
}

export async function benchSwarm(): Promise<void> {
  const N = Number(process.env.BENCH_N ?? 5);
  const SIZE = Number(process.env.BENCH_SWARM_BYTES ?? 256 * MiB);
  const RATE = Number(process.env.BENCH_ORIGIN_RATE ?? 50 * MiB);
  await inScratch('swarm', async (dir, td) => {
    const { origin, url, rel } = await originWithRelease(td, dir, { size: SIZE, bytesPerSec: RATE, chunkSize: 4 * MiB });
    const { daemons } = await startSite(td, dir, N, rel.trusted, { logLevel: 'warn', ...JSON.parse(process.env.BENCH_CONFIG ?? '{}') });
    await waitForPeers(daemons, N - 1);
    const ideal = (SIZE / RATE) * 1000;
    const tStart = performance.now();
    let originDoneMs = NaN;
    const watch = setInterval(() => { if (Number.isNaN(originDoneMs) && origin.bytes(rel.rel) >= SIZE) originDoneMs = performance.now() - tStart; }, 20);
    const ms = await fetchOn(daemons, rel.manifestUrl);
    clearInterval(watch);
    const shoalOrigin = origin.bytes(rel.rel);
    const rss = daemons.map((d) => peakRssMiB(d.proc.pid));

    // Baseline: N plain direct downloads of the same file from the same origin.
    origin.bytesByPath.clear();
    const directMs = await directDownloads(N, `${url}/${rel.rel}`, dir);
    const directOrigin = origin.bytes(rel.rel);

    console.log(`swarm: N=${N}, artifact ${SIZE / MiB} MiB, origin limited to ${RATE / MiB} MiB/s (size/rate = ${fmt(ideal / 1000)} s)`);
    console.log(`                      origin bytes ÷ size   time until all hold it ÷ (size ÷ rate)`);
    console.log(`  shoal (${N} daemons)   ${fmt(shoalOrigin / SIZE).padStart(8)}              ${fmt(ms / ideal).padStart(8)}   (${fmt(ms / 1000)} s; targets 1.00 and ≤ 1.30)`);
    console.log(`  ${N} direct downloads  ${fmt(directOrigin / SIZE).padStart(8)}              ${fmt(directMs / ideal).padStart(8)}   (${fmt(directMs / 1000)} s)`);
    console.log(`  the origin had sent its last byte after ${fmt(originDoneMs / 1000)} s (${fmt(originDoneMs / ideal)} × size/rate); the rest is the peer tail`);
    console.log(`  peak RSS per daemon: ${rss.map((r) => fmt(r, 0)).join(', ')} MiB`);
  });
}

/**
 * One daemon already holds the artifact (say it was prefetched); N more fetch it
 * at the same moment. Every daemon's upload is capped at the same rate, as every
 * machine of an office has the same link. Baseline in the same run: the N machines
 * download it from one server with that uplink (N curls from a server capped at the
 * rate). Chunk picking decides the figures: downloaders that pick the same chunks
 * all pull from the one holder, which then uploads N copies.
 */
export async function benchFanout(): Promise<void> {
  const N = Number(process.env.BENCH_N ?? 4);
  const SIZE = Number(process.env.BENCH_FANOUT_BYTES ?? 256 * MiB);
  const RATE = Number(process.env.BENCH_UPLINK_RATE ?? 100 * MiB);
  await inScratch('fanout', async (dir, td) => {
    const { origin, url, rel } = await originWithRelease(td, dir, { size: SIZE, bytesPerSec: RATE, chunkSize: 4 * MiB });
    const { daemons } = await startSite(td, dir, N + 1, rel.trusted, { logLevel: 'warn', uploadMaxBytesPerSec: RATE });
    await waitForPeers(daemons, N);
    const [holder, ...fetchers] = daemons as [RunningDaemon, ...RunningDaemon[]];
    await fetchOn([holder], rel.manifestUrl);
    const uploaded = async () => sum(parseMetrics(await (await fetch(`${holder.api}/metrics`)).text()), 'shoal_upload_bytes_total');
    const up0 = await uploaded();
    const ms = await fetchOn(fetchers, rel.manifestUrl);
    const holderUp = (await uploaded()) - up0;
    for (const d of fetchers) {
      const s = await d.client.getFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
      if (s.bytes.origin !== 0) throw new Error(`${d.name} used the origin`);
    }

    origin.bytesByPath.clear();
    const directMs = await directDownloads(N, `${url}/${rel.rel}`, dir);

    const ideal = (SIZE / RATE) * 1000;
    console.log(`fanout: 1 holder + ${N} fetching at once, artifact ${SIZE / MiB} MiB, every uplink capped at ${RATE / MiB} MiB/s (size/rate = ${fmt(ideal / 1000)} s)`);
    console.log(`                        holder's upload ÷ size   time until all hold it ÷ (size ÷ rate)`);
    console.log(`  shoal (1 + ${N} daemons)   ${fmt(holderUp / SIZE).padStart(8)}                 ${fmt(ms / ideal).padStart(8)}   (${fmt(ms / 1000)} s)`);
    console.log(`  ${N} from one server       ${fmt(origin.bytes(rel.rel) / SIZE).padStart(8)}                 ${fmt(directMs / ideal).padStart(8)}   (${fmt(directMs / 1000)} s)`);
  });
}

async function startNginx(root: string, listen: string, dir: string): Promise<ChildProcess> {
  const conf = path.join(dir, 'nginx.conf');
  await fs.writeFile(conf, `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx-error.log;
events { worker_connections 64; }
http { access_log off; sendfile on; tcp_nopush on; types { } default_type application/octet-stream;
  client_body_temp_path ${dir}/nginx-tmp; proxy_temp_path ${dir}/nginx-tmp; fastcgi_temp_path ${dir}/nginx-tmp; uwsgi_temp_path ${dir}/nginx-tmp; scgi_temp_path ${dir}/nginx-tmp;
  server { listen ${listen}; root ${root}; } }\n`);
  const p = spawn('nginx', ['-c', conf, '-p', dir], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  if (p.exitCode !== null) throw new Error('nginx failed to start');
  return p;
}

/**
 * Writes and deletes `bytes` of scratch data, so the next transfer writes into
 * page-cache pages the VM has just used. On VMs with free-page reporting (this
 * one: virtio_balloon) pages free for more than a few seconds go back to the
 * host, and touching them again cost 3.5 s of kernel time per GiB instead of
 * 0.3 s: whichever contender happened to follow a pause lost by a factor of
 * two. Both contenders get the same warm-up right before their timed run.
 */
export async function warmPageCache(dir: string, bytes: number): Promise<void> {
  const f = path.join(dir, 'page-cache-warmup');
  const h = await fs.open(f, 'w');
  try {
    const block = Buffer.alloc(4 * MiB);
    for (let off = 0; off < bytes; off += block.length) await h.write(block, 0, block.length, off);
  } finally {
    await h.close();
    await fs.rm(f, { force: true });
  }
}

async function hasCommand(cmd: string): Promise<boolean> {
  return timeCommand('sh', ['-c', `command -v ${cmd} >/dev/null`]).then(() => true, () => false);
}

/** One seeded daemon holding the release, plus a way to time fresh daemons fetching it from that peer only. */
/** `config`: for both daemons (a site secret: the private-link row); `tag` keeps two transfers' folders apart. */
async function peerTransfer(dir: string, td: Teardown, rel: Release, config: Record<string, unknown> = {}, tag = '') {
  const addrs = await peerAddresses(8);
  const seed = await startShoald({ name: `seed${tag}`, dir: path.join(dir, `seed${tag}`), peer: addrs[0]!, staticPeers: [], trustedKeys: rel.trusted, config: { logLevel: 'warn', ...config } });
  td.teardown(async () => { await seed.client.close(); await seed.kill('SIGKILL'); });
  await fetchOn([seed], rel.manifestUrl);
  // Read the seed's copy once, so that it serves from memory as nginx does the origin's file
  // (which the test origin wrote through the cache), whatever the VM did with the pages since.
  const blobs = path.join(dir, `seed${tag}`, 'cache', 'blobs');
  for (const f of await fs.readdir(blobs)) if (f.endsWith('.data')) for await (const _ of createReadStream(path.join(blobs, f))) { /* read */ }
  let k = 1;
  return {
    seed,
    /** ms: wall time of the fetch; cpu: CPU seconds the receiver and the serving peer spent on it. */
    async fetchFresh(beforeTimed?: () => Promise<void>): Promise<{ ms: number; rssReceiver: number; cpu: { receiver: number; seed: number } }> {
      const name = `leech${tag}${k}`;
      const d = await startShoald({ name, dir: path.join(dir, name), peer: addrs[k++]!, staticPeers: [addrs[0]!], trustedKeys: rel.trusted, config: { logLevel: 'warn', ...config } });
      try {
        await waitForPeers([d], 1);
        await beforeTimed?.();
        const [r0, s0] = [cpuSeconds(d.proc.pid), cpuSeconds(seed.proc.pid)];
        const ms = await fetchOn([d], rel.manifestUrl);
        const cpu = { receiver: cpuSeconds(d.proc.pid) - r0, seed: cpuSeconds(seed.proc.pid) - s0 };
        const s = await d.client.getFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
        if (s.bytes.origin !== 0) throw new Error('the receiver used the origin');
        return { ms, rssReceiver: peakRssMiB(d.proc.pid), cpu };
      } finally {
        await d.client.close();
        await d.kill('SIGKILL');
        await fs.rm(path.join(dir, name), { recursive: true, force: true });
      }
    },
  };
}

export async function benchThroughput(): Promise<void> {
  const SIZE = Number(process.env.BENCH_THROUGHPUT_BYTES ?? 1024 * MiB);
  const RUNS = Number(process.env.BENCH_RUNS ?? 5);
  await inScratch('throughput', async (dir, td) => {
    const { url, rel } = await originWithRelease(td, dir, { size: SIZE, chunkSize: 4 * MiB });
    const nginx = await hasCommand('nginx');
    const [nginxAddr] = await peerAddresses(1, 8080);
    let baseUrl = `${url}/${rel.rel}`;
    let baseName = 'curl from a node static server (nginx missing)';
    let serverCpu = () => NaN; // the baseline server's CPU seconds so far (nginx's worker)
    if (nginx) {
      await fs.mkdir(path.join(dir, 'nginx-tmp'), { recursive: true });
      // nginx workers drop to an unprivileged user: let them read the files.
      await fs.chmod(dir, 0o755);
      await fs.chmod(path.join(dir, 'origin'), 0o755);
      const p = await startNginx(path.join(dir, 'origin'), nginxAddr!, dir);
      // SIGTERM: nginx's fast shutdown takes its workers down too (SIGKILL would orphan them).
      td.teardown(() => new Promise<void>((r) => { p.once('exit', () => r()); p.kill('SIGTERM'); }));
      baseUrl = `http://${nginxAddr}/${rel.rel}`;
      baseName = 'curl from nginx';
      // nginx's one worker process does the serving; without it the CPU column reads NaN.
      const worker = Number(spawnSync('pgrep', ['-P', String(p.pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0]);
      if (worker > 0) serverCpu = () => cpuSeconds(worker);
    }
    const transfer = await peerTransfer(dir, td, rel);
    // The same transfer over a private link (TLS 1.3 with the site's PSK).
    const private_ = await peerTransfer(dir, td, rel, { siteSecret: 'throughput-bench-secret-0001' }, '-tls');
    const base: number[] = [];
    const shoal: number[] = [];
    const tlsMs: number[] = [];
    const cpu = { curl: [] as number[], server: [] as number[], receiver: [] as number[], seed: [] as number[], tlsReceiver: [] as number[], tlsSeed: [] as number[] };
    let rssRecv = 0;
    const warm = () => warmPageCache(dir, SIZE + 256 * MiB);
    const runCurl = async () => {
      const out = path.join(dir, 'curl.out');
      await warm();
      const n0 = serverCpu();
      const c = await timeCommandCpu('curl', ['-sf', '-o', out, baseUrl]);
      base.push(c.ms);
      cpu.curl.push(c.cpu);
      cpu.server.push(serverCpu() - n0);
      await fs.rm(out, { force: true });
    };
    const runShoal = async () => {
      const r = await transfer.fetchFresh(warm);
      shoal.push(r.ms);
      cpu.receiver.push(r.cpu.receiver);
      cpu.seed.push(r.cpu.seed);
      rssRecv = Math.max(rssRecv, r.rssReceiver);
    };
    const runTls = async () => {
      const r = await private_.fetchFresh(warm);
      tlsMs.push(r.ms);
      cpu.tlsReceiver.push(r.cpu.receiver);
      cpu.tlsSeed.push(r.cpu.seed);
    };
    // Who goes first alternates: this VM's page-cache cost drifts from one transfer to
    // the next, and a fixed order would hand one contender the same phase every time.
    for (let i = 0; i < RUNS; i++) {
      for (const run of i % 2 ? [runTls, runShoal, runCurl] : [runCurl, runShoal, runTls]) await run();
    }
    const mibs = (ms: number) => SIZE / MiB / (ms / 1000);
    console.log(`throughput: ${SIZE / MiB} MiB over loopback, ${RUNS} runs each in alternating order (medians), each run after the same page-cache warm-up`);
    console.log(`  ${baseName.padEnd(44)} ${fmt(median(base), 0).padStart(6)} ms  ${fmt(mibs(median(base)), 0)} MiB/s  (written to disk)`);
    console.log(`  ${'shoald ← one peer (verify every chunk, fsync)'.padEnd(44)} ${fmt(median(shoal), 0).padStart(6)} ms  ${fmt(mibs(median(shoal)), 0)} MiB/s`);
    console.log(`  ${'shoald ← one peer over TLS 1.3 PSK'.padEnd(44)} ${fmt(median(tlsMs), 0).padStart(6)} ms  ${fmt(mibs(median(tlsMs)), 0)} MiB/s`);
    console.log(`  ratio shoal/baseline: ${fmt(median(base) / median(shoal))}  (target ≥ 0.90); private link ÷ plain: ${fmt(median(shoal) / median(tlsMs))}  (target ≥ 0.85)`);
    console.log(`  each run, ms: curl ${base.map((x) => fmt(x, 0)).join(' ')}; shoald ${shoal.map((x) => fmt(x, 0)).join(' ')}`);
    // CPU is steadier than wall time on a shared VM, and says where the time goes.
    const perGiB = (xs: number[]) => fmt(median(xs) / (SIZE / (1024 * MiB)));
    const cores = os.cpus().length;
    console.log(`  CPU seconds per GiB (all threads; ${cores} cores = ${cores} s per wall second): curl ${perGiB(cpu.curl)} + server ${perGiB(cpu.server)}; shoald receiver ${perGiB(cpu.receiver)} + serving peer ${perGiB(cpu.seed)}; over TLS: receiver ${perGiB(cpu.tlsReceiver)} + serving peer ${perGiB(cpu.tlsSeed)}`);
    console.log(`  peak RSS: receiver ${fmt(rssRecv, 0)} MiB, serving peer ${fmt(peakRssMiB(transfer.seed.proc.pid), 0)} MiB`);
    // The floor under the private link: Node's own sockets, plain and with the same TLS settings.
    const floor = { plain: [] as Array<{ ms: number; cpu: { receiver: number; server: number } }>, tls: [] as Array<{ ms: number; cpu: { receiver: number; server: number } }> };
    for (let i = 0; i < RUNS; i++) for (const mode of i % 2 ? (['tls', 'plain'] as const) : (['plain', 'tls'] as const)) floor[mode].push(await socketTransfer(mode, SIZE));
    const med = (xs: Array<{ ms: number; cpu: { receiver: number; server: number } }>, f: (x: { ms: number; cpu: { receiver: number; server: number } }) => number) => median(xs.map(f)) / (SIZE / (1024 * MiB));
    const added = (a: number[], b: number[]) => fmt((median(a) - median(b)) / (SIZE / (1024 * MiB)));
    console.log(`  Node sockets alone (memory to memory, 1 MiB writes, onread): plain ${fmt(median(floor.plain.map((x) => x.ms)), 0)} ms, TLS ${fmt(median(floor.tls.map((x) => x.ms)), 0)} ms; CPU-s per GiB receiver + server: plain ${fmt(med(floor.plain, (x) => x.cpu.receiver))} + ${fmt(med(floor.plain, (x) => x.cpu.server))}, TLS ${fmt(med(floor.tls, (x) => x.cpu.receiver))} + ${fmt(med(floor.tls, (x) => x.cpu.server))}`);
    console.log(`  TLS adds, CPU-s per GiB receiver + server: Node's sockets ${fmt(med(floor.tls, (x) => x.cpu.receiver) - med(floor.plain, (x) => x.cpu.receiver))} + ${fmt(med(floor.tls, (x) => x.cpu.server) - med(floor.plain, (x) => x.cpu.server))}; shoald ${added(cpu.tlsReceiver, cpu.receiver)} + ${added(cpu.tlsSeed, cpu.seed)}`);
  });
}

export async function benchMemory(): Promise<void> {
  const sizes = (process.env.BENCH_MEMORY_SIZES ?? `${256 * MiB},${2048 * MiB}`).split(',').map(Number);
  console.log('memory: peak RSS (VmHWM) of a fresh receiving daemon and of the serving peer, by artifact size');
  for (const size of sizes) {
    await inScratch('memory', async (dir, td) => {
      const { rel } = await originWithRelease(td, dir, { size, chunkSize: 4 * MiB });
      const transfer = await peerTransfer(dir, td, rel);
      const r = await transfer.fetchFresh();
      console.log(`  ${String(size / MiB).padStart(5)} MiB: receiver ${fmt(r.rssReceiver, 0)} MiB, serving peer (also fetched it from the origin) ${fmt(peakRssMiB(transfer.seed.proc.pid), 0)} MiB  (target ≤ 150, flat)`);
    });
  }
}
