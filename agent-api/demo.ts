/**
 * `npm run demo`: a whole site on one machine, nothing to configure. A local
 * origin (rate-limited like a WAN link) serves a freshly published, signed
 * release; three daemons on loopback find each other as static peers and all
 * fetch it at once; the origin is used once and the rest moves between peers.
 * Ctrl-C stops everything cleanly. `--keep` (or SHOAL_DEMO_KEEP=1) leaves the site
 * running afterwards, its dashboards live, until Ctrl-C.
 */
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { generateSigningKey, writeKeyPair } from '../manifests/keys.js';
import { publish } from '../manifests/publish.js';
import { serializeEnvelope } from '../manifests/sign.js';
import { formatBytes } from '../manifests/units.js';
import { DEFAULTS, type Config } from '../daemon/config/config.js';
import { createLogger } from '../daemon/common/log.js';
import { startDaemon, type Daemon } from '../daemon/main.js';
import { AgentClient } from './client.js';
import { LocalOrigin } from './local-origin.js';

const MiB = 1 << 20;
const SIZE = Number(process.env.SHOAL_DEMO_BYTES ?? 64 * MiB);
const WAN = Number(process.env.SHOAL_DEMO_WAN ?? 32 * MiB);
const N = 3;
const KEEP = process.argv.slice(2).includes('--keep') || !!process.env.SHOAL_DEMO_KEEP;
const unknown = process.argv.slice(2).filter((a) => a !== '--keep');
if (unknown.length) {
  console.error(`usage: npm run demo [-- --keep]   (unknown: ${unknown.join(' ')})`);
  process.exit(2);
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'shoal-demo-'));
const daemons: Daemon[] = [];
const clients: AgentClient[] = [];
let origin: LocalOrigin | undefined;
let stopping = false;
async function cleanup() {
  if (stopping) return;
  stopping = true;
  await Promise.allSettled(clients.map((c) => c.close()));
  await Promise.allSettled(daemons.map((d) => d.stop()));
  await origin?.stop();
  await fs.rm(dir, { recursive: true, force: true });
}
process.once('SIGINT', () => { console.log('\nstopping the demo site…'); void cleanup().then(() => process.exit(130)); });
process.once('SIGTERM', () => void cleanup().then(() => process.exit(143)));

try {
  console.log(`shoal demo: one origin behind a ${formatBytes(WAN)}/s "WAN" link, ${N} daemons on this machine\n`);
  // 1. The publisher's side: a key, a release, a signed manifest on the origin.
  const key = generateSigningKey();
  await writeKeyPair(path.join(dir, 'keys'), key);
  const www = path.join(dir, 'origin');
  await fs.mkdir(path.join(www, 'app'), { recursive: true });
  await fs.writeFile(path.join(www, 'app', 'app.bin'), randomBytes(SIZE));
  origin = new LocalOrigin(www, { bytesPerSec: WAN });
  const originUrl = await origin.start();
  const rel = await publish({ inputs: [path.join(www, 'app', 'app.bin')], name: 'demo-app', version: '1.0.0', sequence: 1, keys: [key], baseUrl: `${originUrl}/app/`, expiresInMs: 86400e3 });
  await fs.writeFile(path.join(www, 'demo-app-1.0.0.json'), serializeEnvelope(rel.envelope));
  const manifestUrl = `${originUrl}/demo-app-1.0.0.json`;
  console.log(`published demo-app 1.0.0 (${formatBytes(SIZE)}, ${rel.envelope.signed.files[0]!.chunks.length} chunks), manifest ${manifestUrl}`);

  // 2. The site: three daemons that list each other as static peers.
  const ports = await Promise.all(Array.from({ length: N }, freePort));
  for (let i = 0; i < N; i++) {
    const config: Config = {
      ...DEFAULTS,
      peerListen: { host: '127.0.0.1', port: ports[i]! },
      adminListen: { host: '127.0.0.1', port: 0 },
      aptListen: { host: '127.0.0.1', port: 0 },
      ociListen: { host: '127.0.0.1', port: 0 },
      cacheDir: path.join(dir, `daemon${i}`),
      trustedKeys: [key.publicKey.text],
      staticPeers: ports.filter((_, j) => j !== i).map((port) => ({ host: '127.0.0.1', port })),
      siteId: 'demo',
    };
    const d = await startDaemon(config, createLogger('warn', () => {}));
    daemons.push(d);
    clients.push(new AgentClient({ api: `http://127.0.0.1:${d.adminPort}` }));
  }
  while (daemons.some((d) => d.table.usable().length < N - 1)) await new Promise((r) => setTimeout(r, 100));
  daemons.forEach((d, i) => console.log(`daemon${i}: peer port ${d.peerPort}, dashboard http://127.0.0.1:${d.adminPort}/  (metrics: /metrics, agent API: /api/v1/status)`));
  console.log(KEEP ? 'the site keeps running after the fetch (--keep): Ctrl-C stops it' : 'the dashboards live while the demo runs; `npm run demo -- --keep` keeps the site running afterwards');

  // 3. Every daemon's update agent asks for the release at the same moment.
  console.log('\nall three fetch it at once:');
  const t0 = performance.now();
  const jobs = await Promise.all(clients.map((c) => c.createFetch({ manifestUrl })));
  const timer = setInterval(() => {
    void Promise.all(clients.map((c, i) => c.getFetch(jobs[i]!.id))).then((ss) => {
      console.log(`  ${((performance.now() - t0) / 1000).toFixed(1)}s  ${ss.map((s, i) => `daemon${i} ${((100 * s.held) / SIZE).toFixed(0).padStart(3)}%`).join('  ')}   origin has sent ${formatBytes(origin!.bytes('app/app.bin'))}`);
    }, () => {});
  }, 1000);
  const done = await Promise.all(clients.map((c, i) => c.waitFetch(jobs[i]!.id, { intervalMs: 100 })));
  clearInterval(timer);
  const secs = (performance.now() - t0) / 1000;
  const fromOrigin = done.reduce((n, s) => n + s.bytes.origin, 0);
  const fromPeers = done.reduce((n, s) => n + s.bytes.peer, 0);
  console.log(`\ndone in ${secs.toFixed(1)} s: ${N} verified copies of ${formatBytes(SIZE)}`);
  console.log(`  origin served  ${formatBytes(origin.bytes('app/app.bin'))} (${(origin.bytes('app/app.bin') / SIZE).toFixed(2)} × the artifact; ${N} direct downloads would be ${N}.00 ×)`);
  console.log(`  daemons got    ${formatBytes(fromOrigin)} from the origin, ${formatBytes(fromPeers)} from each other`);
  console.log(`  uplink saved   ${((100 * fromPeers) / (fromOrigin + fromPeers)).toFixed(0)} %`);
  console.log(`  N direct downloads over the same link would take ≈ ${((N * SIZE) / WAN).toFixed(1)} s`);
  if (KEEP) {
    console.log(`\nthe site keeps running: open http://127.0.0.1:${daemons[0]!.adminPort}/ or try \`node dist/agent-api/shoal.js status --api http://127.0.0.1:${daemons[0]!.adminPort}\`; Ctrl-C to stop`);
    await new Promise(() => {});
  }
} finally {
  await cleanup();
}
