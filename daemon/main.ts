/**
 * shoald's composition root: builds the components from config, starts them
 * in order and stops them in reverse (daemon/common/lifecycle.ts).
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { ShoalError, fromSystemError } from './errors.js';
import { loadPublicKey } from '../manifests/keys.js';
import { createAdminServer, type AdminDeps } from './admin/admin-server.js';
import { Metrics, codeLabel, sizeClass } from './admin/metrics.js';
import { Lifecycle, type Component } from './common/lifecycle.js';
import { TokenBucket } from './common/limits.js';
import { createLogger, type Logger } from './common/log.js';
import { startupWarnings, type Config } from './config/config.js';
import { Content } from './frontends/content.js';
import { SavingsLog } from './admin/savings.js';
import { RateHistory } from './admin/rate-history.js';
import { SiteView } from './admin/site-view.js';
import { systemClock } from './common/clock.js';
import { createAptProxy, type AptProxy } from './apt/proxy.js';
import { createOciMirror } from './oci/mirror.js';
import { RegistryCredentials } from './oci/tokens.js';
import { FetchManager } from './fetch/fetches.js';
import { DaemonState } from './fetch/state.js';
import { OriginClient } from './origin/origin-client.js';
import { PeerClient } from './peers/peer-client.js';
import { createPeerServer, listen } from './peers/peer-server.js';
import { PeerTable } from './peers/peer-table.js';
import { Identity } from './peers/identity.js';
import { siteLink } from './peers/site-auth.js';
import { Jobs } from './schedule/jobs.js';
import { inAnyWindow, parseWindow } from './schedule/windows.js';
import { BlobStore } from './store/blob-store.js';
import { BufferPool } from './store/buffer-pool.js';
import { HashPool } from './store/hash-pool.js';
import { Swarm } from './swarm/swarm.js';

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

/** Settings SIGHUP applies at once; the rest need a restart. */
const LIVE_KEYS: Array<keyof Config> = ['originMaxBytesPerSec', 'uploadMaxBytesPerSec', 'originWindows', 'uploadSchedule', 'trustedKeys', 'threshold',
  'channels', 'channelCron', 'channelJitterMs', 'gcCron', 'scrubCron', 'scrubMaxBytesPerSec', 'cacheHighWatermark', 'cacheLowWatermark', 'cacheMaxBytes',
  'logLevel', 'banMs', 'minPeerBytesPerSec', 'ociResolve', 'ociRegistries'];
const RESTART_KEYS: Array<keyof Config> = ['peerListen', 'adminListen', 'aptListen', 'aptKeyrings', 'ociListen', 'cacheDir', 'discovery', 'interfaces', 'siteId', 'siteSecret'];

/** Under systemd (Type=notify, NotifyAccess=all): Node has no datagram unix sockets, so systemd-notify says READY=1. */
function notifySystemd(log: Logger) {
  if (!process.env.NOTIFY_SOCKET) return;
  const p = spawn('systemd-notify', ['--ready', `--pid=${process.pid}`, '--status=serving'], { stdio: 'ignore' });
  p.on('error', (e) => log('warn', 'systemd-notify failed', { error: e.message }));
}

/**
 * An HTTP server as a component: listens on start, closes (and drops idle
 * keep-alives) on stop. A bind that fails names the config key at fault.
 */
function listener(name: string, key: string, server: http.Server, bind: () => Promise<void>): Component {
  return {
    name,
    start: () => bind().catch((e: NodeJS.ErrnoException) => {
      const why = e.code === 'EADDRINUSE' ? 'address already in use' : e.code === 'EADDRNOTAVAIL' ? 'no such address on this machine' : e.code === 'EACCES' ? 'permission denied' : e.message;
      throw new ShoalError('bad-config', `${key}: cannot listen: ${why}`);
    }),
    stop: () => { server.close(); server.closeAllConnections(); },
  };
}

/** The keyring files under the configured paths (files, or folders of *.gpg / *.asc), at most 256. */
async function keyringFiles(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    const st = await fs.stat(p).catch(() => undefined);
    if (st?.isFile()) out.push(p);
    else if (st?.isDirectory()) for (const f of (await fs.readdir(p).catch(() => [])).sort()) if (/\.(gpg|asc)$/.test(f)) out.push(path.join(p, f));
  }
  return out.slice(0, 256);
}

function dirError(key: string, dir: string, e: unknown): ShoalError {
  const code = (e as NodeJS.ErrnoException).code;
  const why = code === 'EROFS' ? 'read-only file system' : code === 'EEXIST' || code === 'ENOTDIR' ? 'not a directory' : fromSystemError(e, '').message.replace(/^: /, '');
  return new ShoalError('bad-config', `${key} ${dir}: ${why}`);
}

/** A directory we must write to: made if missing, and proven writable now rather than at the first chunk. */
async function writableDir(key: string, dir: string) {
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o750 });
    const probe = path.join(dir, `.shoal-probe-${process.pid}`);
    await (await fs.open(probe, 'w')).close();
    await fs.rm(probe);
  } catch (e) {
    throw dirError(key, dir, e);
  }
}

export async function startDaemon(config: Config, log: Logger = createLogger(config.logLevel)): Promise<Daemon> {
  await writableDir('cacheDir', config.cacheDir);
  const trustedKeys = await Promise.all(config.trustedKeys.map(loadPublicKey));
  const stateDir = config.stateDir ?? config.cacheDir;
  const stateKey = config.stateDir ? 'stateDir' : 'cacheDir';
  if (config.stateDir) await writableDir('stateDir', stateDir);
  const atStateDir = (e: unknown): never => { throw dirError(stateKey, stateDir, e); };
  const state = await DaemonState.open(stateDir).catch(atStateDir);
  // The peer id is the key's (peers/identity.ts): proven to peers, not chosen.
  const identity = await Identity.open(stateDir).catch(atStateDir);
  const selfId = identity.id;
  const life = new Lifecycle();

  // Read only at scrape time, when every component exists.
  const metrics = new Metrics({
    peers: () => ({ healthy: table.usable().length, banned: table.all().filter((p) => p.healthy && table.isBanned(p)).length }),
    cacheBytes: () => store.usedBytes(),
    cacheCapacity: () => config.cacheMaxBytes,
  });
  const savings = new SavingsLog(path.join(stateDir, 'savings.json'), systemClock);
  const rates = new RateHistory(systemClock);
  life.add({ name: 'savings log', start: () => savings.start(), stop: () => savings.stop() });
  const hasher = new HashPool();
  life.add({ name: 'hash pool', stop: () => hasher.stop() });
  const store = await BlobStore.open(config.cacheDir, config.cacheMaxBytes, {
    log: (level, msg, fields) => log(level, msg, fields),
    evicted: (sha, bytes) => { metrics.cacheEvictions.inc(); log('info', 'evicted blob', { blob: sha, bytes }); },
    dropped: (sha, chunks) => {
      metrics.chunksDropped.inc(chunks.length);
      log('warn', 'dropped stored chunks that no longer match their hash', { blob: sha, chunks: chunks.length });
      void swarm.chunksDropped(sha, chunks);
    },
    removed: (sha, chunkCount, held) => void swarm.chunksGone(sha, chunkCount, held),
  }, { hasher });
  life.add({ name: 'store', stop: () => store.close() });

  // With a site secret every peer link is TLS 1.3 with the site's PSK (docs/security.md); without one the site is open.
  const link = config.siteSecret?.length ? siteLink(config.siteSecret) : undefined;
  const client = new PeerClient({ requestTimeoutMs: config.requestTimeoutMs, minBytesPerSec: config.minPeerBytesPerSec, identity, localAddress: config.peerListen.host, ...(link ? { tls: link.client } : {}) });
  life.add({ name: 'peer client', stop: () => client.close() });
  const table = new PeerTable(selfId, config.siteId, client, log, { banMs: config.banMs, maxPeers: config.maxPeers, scheme: link ? 'https' : 'http' });
  for (const sp of config.staticPeers) table.addAddress(sp.host, sp.port, 'static');
  life.add({ name: 'peer table', start: () => table.start(), stop: () => table.stop() });

  const origin = new OriginClient({
    maxBytesPerSec: config.originMaxBytesPerSec, concurrency: config.originConcurrency, requestTimeoutMs: config.requestTimeoutMs,
    minBytesPerSec: config.originMinBytesPerSec, minRateWindowMs: config.originMinRateWindowMs,
    onResponse: (status) => metrics.originRequests.inc({ code: codeLabel(status) }),
  });
  life.add({ name: 'origin client', stop: () => origin.close() });
  // Registered whatever ociListen says: a chunk of a layer can be leased to this daemon by any peer's pull.
  origin.addCredentials(new RegistryCredentials(() => config.ociRegistries, (url, max, signal) => origin.fetchCredential(url, max, signal), systemClock));

  const swarm = new Swarm({
    selfId, config, log, store, table, client, origin,
    originAllowed: () => inAnyWindow(config.originWindows.map((w) => parseWindow(w))),
    stats: {
      stored: (source, bytes, peerId, kind) => {
        metrics.downloadBytes.inc({ source, kind }, bytes);
        rates.add(source, bytes);
        savings.add(kind, source, bytes);
        metrics.chunksVerified.inc();
        const p = peerId ? table.get(peerId) : undefined;
        if (p) p.bytesFrom += bytes;
      },
      verifyFailure: (source) => metrics.verifyFailures.inc({ source }),
      distrusted: () => metrics.coordinatorsDistrusted.inc(),
    },
  });
  life.add({ name: 'swarm', stop: () => swarm.stop() });
  // Lease totals live in the coordinator; the counters follow them when scraped.
  const leases = { granted: 0, expired: 0 };
  metrics.onScrape(() => {
    metrics.leasesGranted.inc(swarm.coordinator.granted - leases.granted);
    metrics.leasesExpired.inc(swarm.coordinator.expired - leases.expired);
    leases.granted = swarm.coordinator.granted;
    leases.expired = swarm.coordinator.expired;
  });

  const content = new Content({ swarm, origin });
  const fetches = new FetchManager({
    config, origin, swarm, state, trustedKeys, content, log,
    onFinished: (job) => {
      metrics.fetches.inc({ result: job.state === 'done' ? 'done' : 'failed' });
      // A fetch the cache answered whole: its bytes count as delivered from here.
      const st = job.status();
      const kind = st.kind === 'url' ? 'url' : 'native';
      const fromCache = job.state === 'done' ? st.size - st.bytes.origin - st.bytes.peer : 0;
      if (fromCache > 0) { metrics.localBytes.inc({ kind }, fromCache); savings.add(kind, 'local', fromCache); }
      if (job.state === 'done') metrics.fetchDuration.observe({ size_class: sizeClass(job.status().size) }, (job.finishedAt!.getTime() - job.createdAt.getTime()) / 1000);
    },
  });
  metrics.onScrape(() => metrics.fetchesInflight.set(fetches.list().filter((j) => !j.finishedAt).length));
  life.add({ name: 'fetches', start: () => fetches.init() });

  const uploadBucket = new TokenBucket(config.uploadMaxBytesPerSec);
  const peerServer = createPeerServer({
    identity, site: config.siteId, store, coordinator: swarm.coordinator, board: swarm.board, uploadBucket, log,
    // 8 × 1 MiB send buffers: also the bound on concurrent uploads.
    buffers: new BufferPool(8),
    manifest: (id) => fetches.manifestBytes(id),
    stats: (since) => savings.since(since),
    onUpload: (n) => { metrics.uploadBytes.inc(n); rates.add('upload', n); },
    ...(link ? { tls: link.server } : {}),
  });
  const ports = { peer: 0, admin: 0, apt: 0, oci: 0 };
  let ready = false;
  life.add(listener('peer listener', `peerListen ${config.peerListen.host}:${config.peerListen.port}`, peerServer, async () => { ports.peer = await listen(peerServer, config.peerListen.host, config.peerListen.port); }));

  const adminDeps: AdminDeps = { selfId, site: config.siteId, link: link?.kind ?? 'plain', fetches, table, swarm, store, content, savings, client, log, metrics, ready: () => ready, peerPort: () => ports.peer, eventStreams: { open: 0 },
    rates, siteView: new SiteView({ selfId, table, client, savings, clock: systemClock }) };
  const adminServer = createAdminServer(adminDeps, { browserGuard: true });
  life.add(listener('admin listener', `adminListen ${config.adminListen.host}:${config.adminListen.port}`, adminServer, async () => { ports.admin = await listen(adminServer, config.adminListen.host, config.adminListen.port); }));
  // Bytes a front-end handed to a local client: from the cache here, or passed through unshared.
  const handedOut = (kind: 'apt' | 'oci') => (how: 'local' | 'unshared', bytes: number) => {
    (how === 'local' ? metrics.localBytes : metrics.unsharedBytes).inc({ kind }, bytes);
    savings.add(kind, how, bytes);
  };
  let aptProxy: AptProxy | undefined;
  if (config.aptListen) {
    const at = config.aptListen;
    aptProxy = createAptProxy({
      content, origin, log, stateDir, keyrings: () => keyringFiles(config.aptKeyrings),
      counted: handedOut('apt'),
    });
    const { server, load } = aptProxy;
    life.add(listener('apt proxy', `aptListen ${at.host}:${at.port}`, server, async () => {
      await load();
      ports.apt = await listen(server, at.host, at.port);
    }));
  }
  if (config.ociListen) {
    const at = config.ociListen;
    const mirror = createOciMirror({
      content, origin, log, registries: () => config.ociRegistries, resolveTags: () => config.ociResolve,
      counted: handedOut('oci'),
    });
    life.add(listener('oci mirror', `ociListen ${at.host}:${at.port}`, mirror, async () => { ports.oci = await listen(mirror, at.host, at.port); }));
  }
  if (config.agentSocket) {
    const sock = config.agentSocket;
    const socketServer = createAdminServer(adminDeps);
    life.add(listener('agent socket', `agentSocket ${sock}`, socketServer, async () => {
      await fs.mkdir(path.dirname(sock), { recursive: true });
      await fs.rm(sock, { force: true });
      await new Promise<void>((resolve, reject) => socketServer.once('error', reject).listen(sock, () => resolve()));
      await fs.chmod(sock, 0o660);
    }));
    life.add({ name: 'agent socket file', stop: () => fs.rm(sock, { force: true }) });
  }

  if (config.discovery === 'mdns') {
    // Loaded only when used: the mDNS stack costs ~20 MiB of memory a static site does not need.
    const { MdnsDiscovery } = await import('./peers/discovery/mdns.js');
    let discovery: InstanceType<typeof MdnsDiscovery> | undefined;
    // Stopped before the listeners close: goodbye packets first, so peers drop us at once.
    life.add({
      name: 'discovery',
      start: () => (discovery = new MdnsDiscovery({
        selfId, fingerprints: link?.fingerprints ?? ['open'], link: link?.kind ?? 'plain', port: ports.peer, interfaces: config.interfaces, table, log,
        // A loopback-only proxy is of no use to other machines: advertised only when it listens beyond.
        ...(config.aptListen && !/^(127\.|::1$|localhost$)/.test(config.aptListen.host) ? { aptProxyPort: ports.apt } : {}),
      })).start(),
      stop: () => discovery?.stop(),
    });
  }
  const jobs = new Jobs({ config, fetches, store, state, uploadBucket, log, onScrub: (r) => metrics.scrubbed(r) });
  life.add({ name: 'jobs', start: () => jobs.start(), stop: () => jobs.stop() });
  life.add({ name: 'readiness', start: () => { ready = true; notifySystemd(log); }, stop: () => { ready = false; } });

  await life.start();
  for (const w of startupWarnings(config)) log('warn', w.message, { warning: w.code });
  log.notice('shoald ready', { peerId: selfId, peerPort: ports.peer, adminPort: ports.admin, ...(ports.apt ? { aptPort: ports.apt } : {}), ...(ports.oci ? { ociPort: ports.oci } : {}), site: config.siteId, cacheDir: config.cacheDir });

  return {
    peerId: selfId, peerPort: ports.peer, adminPort: ports.admin, config, metrics, swarm, fetches, table, store, jobs,
    reload: async (next) => {
      const keys = await Promise.all(next.trustedKeys.map(loadPublicKey));
      const changed = LIVE_KEYS.filter((k) => JSON.stringify(config[k]) !== JSON.stringify(next[k]));
      Object.assign(config, Object.fromEntries(LIVE_KEYS.map((k) => [k, next[k]])));
      await fetches.setTrustedKeys(keys);
      origin.bucket.setRate(config.originMaxBytesPerSec);
      store.maxBytes = config.cacheMaxBytes;
      log.level = config.logLevel;
      jobs.restart();
      const restartOnly = RESTART_KEYS.filter((k) => JSON.stringify(config[k]) !== JSON.stringify(next[k]));
      log.notice('config reloaded', { changed, ...(restartOnly.length ? { needsRestart: restartOnly } : {}) });
    },
    stop: async () => {
      await life.stop((name, e) => log('warn', 'component failed to stop', { component: name, error: (e as Error).message }));
      log.notice('shoald stopped');
    },
  };
}
