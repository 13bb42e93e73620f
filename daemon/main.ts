/** shoald: wires the subsystems from config, starts them, stops cleanly on SIGTERM/SIGINT. */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { ShoalError } from '../manifests/errors.js';
import { loadPublicKey } from '../manifests/keys.js';
import { createAdminServer } from './admin-server.js';
import { SiteAuth } from './site-auth.js';
import { Jobs } from './jobs.js';
import { inAnyWindow, parseWindow } from './windows.js';
import type { Config } from './config.js';
import { FetchManager } from './fetches.js';
import { TokenBucket } from './limits.js';
import { createLogger, type Logger } from './log.js';
import { Metrics, codeLabel, sizeClass } from './metrics.js';
import { OriginClient } from './origin/origin-client.js';
import { createPeerServer, listen } from './peer-server/peer-server.js';
import { DaemonState } from './state.js';
import { BlobStore } from './store/blob-store.js';
import { PeerClient } from './swarm/peer-client.js';
import { PeerTable } from './swarm/peer-table.js';
import { Swarm } from './swarm/swarm.js';
import { BufferPool } from './buffer-pool.js';
import { directIoAvailable } from './store/direct-io.js';
import { hashingEngine } from './store/sha256-pair.js';

export interface Daemon {
  peerId: string;
  peerPort: number;
  adminPort: number;
  config: Config;
  metrics: Metrics;
  swarm: Swarm;
  fetches: FetchManager;
  table: PeerTable;
  store: BlobStore;
  jobs: Jobs;
  /** SIGHUP: apply new rate limits, windows, trusted keys and schedules without dropping transfers. */
  reload(next: Config): Promise<void>;
  stop(): Promise<void>;
}

/** Under systemd (Type=notify, NotifyAccess=all): Node has no datagram unix sockets, so systemd-notify says READY=1. */
function notifySystemd(log: Logger) {
  if (!process.env.NOTIFY_SOCKET) return;
  const p = spawn('systemd-notify', ['--ready', `--pid=${process.pid}`, '--status=serving'], { stdio: 'ignore' });
  p.on('error', (e) => log('warn', 'systemd-notify failed', { error: e.message }));
}

export async function startDaemon(config: Config, log: Logger = createLogger(config.logLevel)): Promise<Daemon> {
  await fs.mkdir(config.cacheDir, { recursive: true, mode: 0o750 }).catch((e) => {
    throw new ShoalError('bad-config', `cacheDir ${config.cacheDir}: ${(e as Error).message}`);
  });
  const trustedKeys = await Promise.all(config.trustedKeys.map(loadPublicKey));
  const stateDir = config.stateDir ?? config.cacheDir;
  await fs.mkdir(stateDir, { recursive: true, mode: 0o750 });
  const state = await DaemonState.open(stateDir);
  let table: PeerTable | undefined;
  let store: BlobStore | undefined;
  const metrics = new Metrics({
    peers: () => ({ healthy: table?.usable().length ?? 0, banned: table?.all().filter((p) => p.healthy && table!.isBanned(p)).length ?? 0 }),
    cacheBytes: () => store?.usedBytes() ?? 0,
    cacheCapacity: () => config.cacheMaxBytes,
  });
  store = await BlobStore.open(config.cacheDir, config.cacheMaxBytes, {
    log: (level, msg, fields) => log(level, msg, fields),
    evicted: (sha, bytes) => { metrics.cacheEvictions.inc(); log('info', 'evicted blob', { blob: sha, bytes }); },
  }, { directWrites: config.directWrites });
  // With a site secret every peer request is signed and checked (docs/protocol.md); without one the site is open.
  const auth = config.siteSecret ? new SiteAuth(config.siteSecret, state.peerId) : undefined;
  const client = new PeerClient({ requestTimeoutMs: config.requestTimeoutMs, minBytesPerSec: config.minPeerBytesPerSec, ...(auth ? { authHeaders: (m: string, p: string) => auth.headers(m, p) } : {}) });
  table = new PeerTable(state.peerId, config.siteId, client, log, { banMs: config.banMs, maxPeers: config.maxPeers });
  for (const sp of config.staticPeers) table.addAddress(sp.host, sp.port, 'static');
  const origin = new OriginClient({
    maxBytesPerSec: config.originMaxBytesPerSec, concurrency: config.originConcurrency, requestTimeoutMs: config.requestTimeoutMs,
    onResponse: (status) => metrics.originRequests.inc({ code: codeLabel(status) }),
  });
  const peers = table;
  const swarm = new Swarm({
    selfId: state.peerId, config, log, store, table, client, origin,
    originAllowed: () => inAnyWindow(config.originWindows.map((w) => parseWindow(w))),
    stats: {
      stored: (source, bytes, peerId) => {
        metrics.downloadBytes.inc({ source }, bytes);
        metrics.chunksVerified.inc();
        const p = peerId ? peers.get(peerId) : undefined;
        if (p) p.bytesFrom += bytes;
      },
      verifyFailure: (source) => metrics.verifyFailures.inc({ source }),
    },
  });
  // Lease totals live in the coordinator; the counters follow them when scraped.
  let granted = 0;
  let expired = 0;
  const syncLeases = () => {
    metrics.leasesGranted.inc(swarm.coordinator.granted - granted);
    metrics.leasesExpired.inc(swarm.coordinator.expired - expired);
    granted = swarm.coordinator.granted;
    expired = swarm.coordinator.expired;
  };
  const fetches = new FetchManager({
    config, origin, swarm, state, trustedKeys, log,
    onFinished: (job) => {
      metrics.fetches.inc({ result: job.state === 'done' ? 'done' : 'failed' });
      if (job.state === 'done') metrics.fetchDuration.observe({ size_class: sizeClass(job.status().size) }, (job.finishedAt!.getTime() - job.createdAt.getTime()) / 1000);
    },
  });
  metrics.onScrape(() => {
    syncLeases();
    metrics.fetchesInflight.set(fetches.list().filter((j) => !j.finishedAt).length);
  });
  await fetches.init();

  const uploadBucket = new TokenBucket(config.uploadMaxBytesPerSec);
  const peerServer = createPeerServer({
    selfId: state.peerId, site: config.siteId, store, coordinator: swarm.coordinator, uploadBucket, log,
    // 8 × 1 MiB send buffers: also the bound on concurrent uploads.
    buffers: new BufferPool(8),
    manifest: (id) => fetches.manifestBytes(id),
    onUpload: (n) => metrics.uploadBytes.inc(n),
    ...(auth ? { authenticate: (req: import('node:http').IncomingMessage) => void auth.verify(req) } : {}),
  });
  let ready = false;
  let peerPort = 0;
  const adminDeps = { selfId: state.peerId, site: config.siteId, fetches, table, swarm, store, log, metrics, ready: () => ready, peerPort: () => peerPort };
  const adminServer = createAdminServer(adminDeps);
  const servers: http.Server[] = [peerServer, adminServer];
  peerPort = await listen(peerServer, config.peerListen.host, config.peerListen.port);
  const adminPort = await listen(adminServer, config.adminListen.host, config.adminListen.port);
  let socketServer: http.Server | undefined;
  if (config.agentSocket) {
    await fs.mkdir(path.dirname(config.agentSocket), { recursive: true });
    await fs.rm(config.agentSocket, { force: true });
    socketServer = createAdminServer(adminDeps);
    await new Promise<void>((resolve, reject) => socketServer!.once('error', reject).listen(config.agentSocket, () => resolve()));
    await fs.chmod(config.agentSocket, 0o660);
    servers.push(socketServer);
  }
  table.start();
  // Loaded only when used: the mDNS stack costs ~20 MiB of memory a static site does not need.
  const discovery = config.discovery === 'mdns'
    ? new (await import('./discovery/mdns.js')).MdnsDiscovery({ selfId: state.peerId, fingerprint: auth?.fingerprint ?? 'open', port: peerPort, interfaces: config.interfaces, table, log })
    : undefined;
  await discovery?.start();
  const jobs = new Jobs({ config, fetches, store, state, uploadBucket, log });
  jobs.start();
  ready = true;
  notifySystemd(log);
  log.notice('shoald ready', { peerId: state.peerId, peerPort, adminPort, site: config.siteId, cacheDir: config.cacheDir, hashing: hashingEngine, directWrites: config.directWrites && directIoAvailable });

  let stopping: Promise<void> | undefined;
  return {
    peerId: state.peerId, peerPort, adminPort, config, metrics, swarm, fetches, table, store, jobs,
    reload: async (next) => {
      const keys = await Promise.all(next.trustedKeys.map(loadPublicKey));
      const live: Array<keyof Config> = ['originMaxBytesPerSec', 'uploadMaxBytesPerSec', 'originWindows', 'uploadSchedule', 'trustedKeys', 'threshold',
        'channels', 'channelCron', 'channelJitterMs', 'gcCron', 'cacheHighWatermark', 'cacheLowWatermark', 'cacheMaxBytes', 'logLevel', 'banMs', 'minPeerBytesPerSec'];
      const changed = live.filter((k) => JSON.stringify(config[k]) !== JSON.stringify(next[k]));
      Object.assign(config, Object.fromEntries(live.map((k) => [k, next[k]])));
      await fetches.setTrustedKeys(keys);
      origin.bucket.setRate(config.originMaxBytesPerSec);
      store.maxBytes = config.cacheMaxBytes;
      log.level = config.logLevel;
      jobs.restart();
      const restartOnly = (['peerListen', 'adminListen', 'cacheDir', 'discovery', 'interfaces', 'siteId', 'siteSecret'] as const).filter((k) => JSON.stringify(config[k]) !== JSON.stringify(next[k]));
      log.notice('config reloaded', { changed, ...(restartOnly.length ? { needsRestart: restartOnly } : {}) });
    },
    stop: () => (stopping ??= (async () => {
      ready = false;
      jobs.stop();
      await discovery?.stop(); // goodbye packets first, so peers drop us at once
      table.stop();
      await swarm.stop();
      for (const s of servers) { s.close(); s.closeAllConnections(); }
      await Promise.allSettled([client.close(), origin.close()]);
      await store.close();
      if (config.agentSocket) await fs.rm(config.agentSocket, { force: true });
      log.notice('shoald stopped');
    })()),
  };
}
