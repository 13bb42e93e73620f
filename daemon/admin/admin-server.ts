/**
 * The admin listener (loopback by default, plus the agent unix socket): the
 * agent API under /api/v1, health and readiness. Every error is JSON
 * `{error: {code, message}}` with a stable code.
 */
import { promises as fs } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import os from 'node:os';
import { ShoalError } from '../errors.js';
import type { FetchManager } from '../fetch/fetches.js';
import type { CreateFetch, GcResult, PeerView, PinResult, RemoveResult, StatsView, StatusView } from './api.js';
import { readJsonBody, sendError, sendJson } from '../common/http-util.js';
import type { Logger } from '../common/log.js';
import type { Metrics } from './metrics.js';
import { importArchive, planExport, writeExport } from '../fetch/site-archive.js';
import type { BlobStore } from '../store/blob-store.js';
import type { PeerTable } from '../peers/peer-table.js';
import type { Swarm } from '../swarm/swarm.js';
import type { Content } from '../frontends/content.js';
import { serveBlob } from '../frontends/serve.js';
import { addTotals, type SavingsLog } from './savings.js';
import type { PeerClient } from '../peers/peer-client.js';
import { parseDuration } from '../../manifests/units.js';
import type { RateHistory } from './rate-history.js';
import type { SiteView } from './site-view.js';
import type { FetchJob } from '../fetch/fetches.js';
import type { BlobDownload } from '../swarm/downloader.js';

export interface AdminDeps {
  selfId: string;
  site: string;
  link: 'tls-psk-v1' | 'plain';
  fetches: FetchManager;
  table: PeerTable;
  swarm: Swarm;
  store: BlobStore;
  content: Content;
  savings: SavingsLog;
  client: Pick<PeerClient, 'stats'>;
  log: Logger;
  metrics: Metrics;
  ready(): boolean;
  peerPort(): number;
  /** Dashboard event streams open now, over every admin listener of this daemon. */
  eventStreams: { open: number };
  /** Per-second throughput of the last minutes, for the dashboard's chart. */
  rates: RateHistory;
  /** Every member's savings, asked over the peer protocol while a page watches. */
  siteView: SiteView;
}

/** The dashboard's files: a fixed list, nothing else under it is served. */
const DASHBOARD_DIR = new URL('../../../dashboard/', import.meta.url);
const DASHBOARD_FILES: Record<string, [string, string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
};
const MAX_EVENT_CLIENTS = 32;

/**
 * What a browser page must not do through the loopback listener: reach it by
 * a name that is not the machine's (DNS rebinding), or change state from
 * another origin (a form or `fetch` on any web page). Local tools send
 * neither a foreign Host nor an Origin; the unix socket needs no such check.
 */
export function refuseBrowserAbuse(req: IncomingMessage): void {
  const host = (req.headers.host ?? '').toLowerCase();
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  const local = name === 'localhost' || name === os.hostname().toLowerCase() || isIP(name.replace(/^\[|\]$/g, '')) !== 0;
  if (!local) throw new ShoalError('forbidden', `Host "${host.slice(0, 100)}" is not this machine: the admin API answers only to its own address`);
  if (req.method === 'GET' || req.method === 'HEAD') return;
  const origin = req.headers.origin;
  const site = req.headers['sec-fetch-site'];
  if ((origin !== undefined && origin !== `http://${host}`) || (site !== undefined && site !== 'same-origin' && site !== 'none')) {
    throw new ShoalError('forbidden', 'a state change from another origin is refused');
  }
  const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type && type !== 'application/json' && type !== 'application/x-tar') {
    throw new ShoalError('forbidden', `Content-Type ${type.slice(0, 60)} is refused: send application/json`);
  }
}

export function createAdminServer(d: AdminDeps, opts: { browserGuard?: boolean } = {}): http.Server {
  const server = http.createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 0, headersTimeout: 10_000 }, (req, res) => {
    Promise.resolve().then(() => { if (opts.browserGuard) refuseBrowserAbuse(req); return route(d, req, res); }).catch((e) => {
      if (!(e instanceof ShoalError)) d.log('error', 'admin request failed', { url: req.url, error: (e as Error).stack });
      sendError(res, e);
    });
  });
  server.on('clientError', (_e, socket) => socket.destroy());
  return server;
}

async function route(d: AdminDeps, req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? '/', 'http://admin');
  const p = url.pathname;
  const m = req.method ?? 'GET';
  if (m === 'GET' && p === '/healthz') return sendJson(res, 200, { ok: true });
  if (m === 'GET' && p === '/metrics') {
    const text = await d.metrics.text();
    res.writeHead(200, { 'content-type': d.metrics.contentType, 'cache-control': 'no-store' });
    return void res.end(text);
  }
  if (m === 'GET' && p === '/favicon.ico') return void res.writeHead(204).end();
  if (m === 'GET' && DASHBOARD_FILES[p]) {
    const [file, type] = DASHBOARD_FILES[p]!;
    const body = await fs.readFile(new URL(file, DASHBOARD_DIR));
    res.writeHead(200, { 'content-type': type, 'content-length': body.length, 'cache-control': 'no-cache', 'content-security-policy': "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'", 'x-content-type-options': 'nosniff' });
    return void res.end(body);
  }
  if (m === 'GET' && p === '/readyz') return sendJson(res, d.ready() ? 200 : 503, { ready: d.ready() });
  if ((m === 'GET' || m === 'HEAD') && p.startsWith('/sha256/')) return byHash(d, url, req, res);
  if (!p.startsWith('/api/v1/')) throw new ShoalError('not-found', `no route for ${m} ${p}`);
  const parts = p.slice('/api/v1/'.length).split('/').map(decodeSegment);
  const [what, id, ...rest] = parts;
  if (what === 'fetches') {
    if (m === 'POST' && !id) return createFetch(d, req, res);
    if (m === 'GET' && !id) return sendJson(res, 200, { fetches: d.fetches.list().map((j) => j.status()) });
    if (m === 'GET' && id && !rest.length) {
      const job = d.fetches.get(id);
      if (!job) throw new ShoalError('not-found', `no fetch ${id}`);
      return sendJson(res, 200, job.status());
    }
    if (m === 'DELETE' && id && !rest.length) return sendJson(res, 200, d.fetches.cancel(id).status());
    if (m === 'GET' && id && rest.length === 1 && rest[0] === 'events') return fetchEvents(d, id, url, req, res);
  }
  if (what === 'artifacts') {
    if (m === 'GET' && !id) return sendJson(res, 200, { artifacts: await d.fetches.artifacts() });
    if (id && rest.length === 2 && m === 'POST' && (rest[1] === 'pin' || rest[1] === 'unpin')) {
      await d.fetches.pin(id, rest[0]!, rest[1] === 'pin');
      const r: PinResult = { ok: true, name: id, version: rest[0]!, pinned: rest[1] === 'pin' };
      return sendJson(res, 200, r);
    }
    if (id && rest.length === 1 && m === 'DELETE') {
      const r: RemoveResult = { ok: true, ...(await d.fetches.remove(id, rest[0]!)) };
      return sendJson(res, 200, r);
    }
  }
  if (what === 'export' && !id && m === 'GET') {
    const refs = url.searchParams.getAll('artifact').map((a) => {
      const i = a.indexOf('/');
      if (i <= 0) throw new ShoalError('bad-request', 'artifact=NAME/VERSION');
      return { name: a.slice(0, i), version: a.slice(i + 1) };
    });
    const plan = await planExport(d.fetches, d.store, refs);
    res.writeHead(200, { 'content-type': 'application/x-tar', 'content-disposition': 'attachment; filename="shoal-site.tar"' });
    await writeExport(plan, d.store, res).catch(() => res.destroy());
    return;
  }
  if (what === 'import' && !id && m === 'POST') return sendJson(res, 200, await importArchive(d.fetches, d.store, req));
  if (what === 'gc' && !id && m === 'POST') {
    const body = (await readJsonBody(req, 4096).catch(() => ({}))) as { targetBytes?: unknown } | null;
    const target = typeof body?.targetBytes === 'number' && Number.isSafeInteger(body.targetBytes) && body.targetBytes >= 0 ? body.targetBytes : Math.floor(d.store.maxBytes * 0.9);
    const r = await d.store.evictDownTo(target);
    const out: GcResult = { freedBytes: r.freed, usedBytes: d.store.usedBytes(), targetBytes: target, reached: r.reached };
    return sendJson(res, 200, out);
  }
  if (m === 'GET' && what === 'peers' && !id) return sendJson(res, 200, { peers: peers(d) });
  if (m === 'GET' && what === 'status' && !id) return sendJson(res, 200, status(d));
  if (m === 'GET' && what === 'stats' && !id) return sendJson(res, 200, await stats(d, url));
  if (m === 'GET' && what === 'events' && !id) return events(d, req, res);
  if ((m === 'GET' || m === 'HEAD') && what === 'artifacts' && id && rest[0] && rest[1] === 'files' && rest.length > 2) {
    return artifactFile(d, id, rest[0], rest.slice(2).join('/'), req, res);
  }
  throw new ShoalError('not-found', `no route for ${m} ${p}`);
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ShoalError('bad-request', 'bad percent-encoding in the path');
  }
}

/**
 * The plain local URL form: `GET|HEAD /sha256/<hex>[/<name>]?url=<origin URL>[&size=N]`, for
 * any HTTP client (curl, an OTA agent). The blob is fetched once per site and answered only
 * once its whole SHA-256 matched; Range/206 and HEAD as from any file server. Without url
 * only a cached blob (or one the site's peers hold) is served.
 */
async function byHash(d: AdminDeps, url: URL, req: IncomingMessage, res: ServerResponse) {
  const [sha] = url.pathname.slice('/sha256/'.length).split('/');
  const origin = url.searchParams.get('url');
  const size = url.searchParams.get('size');
  if (origin !== null) checkHttpUrl(origin, 'url');
  if (size !== null && !/^\d{1,16}$/.test(size)) throw new ShoalError('bad-request', 'size must be a byte count');
  const ctl = new AbortController();
  res.once('close', () => ctl.abort(new ShoalError('aborted', 'client went away')));
  const { blob, local } = await d.content.complete({ sha256: sha ?? '', ...(size !== null ? { size: Number(size) } : {}), urls: origin ? [origin] : [], kind: 'url' }, { signal: ctl.signal });
  const sent = await serveBlob(blob, req, res);
  if (local) { d.metrics.localBytes.inc({ kind: 'url' }, sent); d.savings.add('url', 'local', sent); }
}

/** An http(s) URL from a request, or bad-request naming the field. */
function checkHttpUrl(v: string, field: string) {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new ShoalError('bad-request', `${field} is not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ShoalError('bad-request', `${field} must be an http or https URL`);
}

async function createFetch(d: AdminDeps, req: IncomingMessage, res: ServerResponse) {
  const body = (await readJsonBody(req, 33 << 20)) as { [K in keyof CreateFetch]?: unknown } | null;
  const usage = 'body must be {manifestUrl: string}, {channelUrl: string}, {manifest: object} or {url: string, sha256: hex, size?: number}';
  if (!body || typeof body !== 'object') throw new ShoalError('bad-request', usage);
  let job;
  const now = body.ignoreOriginWindow === true ? { ignoreOriginWindow: true } : {};
  if (body.url !== undefined || body.sha256 !== undefined) {
    if (typeof body.url !== 'string' || typeof body.sha256 !== 'string' || body.manifestUrl !== undefined || body.channelUrl !== undefined || body.manifest !== undefined) throw new ShoalError('bad-request', usage);
    checkHttpUrl(body.url, 'url');
    if (!/^[0-9a-f]{64}$/.test(body.sha256)) throw new ShoalError('bad-request', 'sha256 must be 64 lowercase hex characters');
    if (body.size !== undefined && (typeof body.size !== 'number' || !Number.isSafeInteger(body.size) || body.size < 0)) throw new ShoalError('bad-request', 'size must be a non-negative integer');
    job = d.fetches.create({ byHash: { url: body.url, sha256: body.sha256, ...(body.size !== undefined ? { size: body.size } : {}) }, ...now });
  } else if (typeof body.manifestUrl === 'string' && body.channelUrl === undefined && body.manifest === undefined) job = d.fetches.create({ manifestUrl: body.manifestUrl, ...now });
  else if (typeof body.channelUrl === 'string' && body.manifestUrl === undefined && body.manifest === undefined) job = d.fetches.create({ channelUrl: body.channelUrl, ...now });
  else if (body.manifest && typeof body.manifest === 'object' && body.manifestUrl === undefined && body.channelUrl === undefined) job = d.fetches.create({ manifest: Buffer.from(JSON.stringify(body.manifest)), ...now });
  else throw new ShoalError('bad-request', usage);
  sendJson(res, 202, job.status());
}

/** `GET /api/v1/stats?period=7d`: this daemon's and every healthy peer's savings totals, and the site's sum. */
async function stats(d: AdminDeps, url: URL): Promise<StatsView> {
  let periodMs: number;
  try {
    periodMs = parseDuration(url.searchParams.get('period') ?? '24h', 'period');
  } catch (e) {
    throw new ShoalError('bad-request', (e as Error).message);
  }
  const since = Date.now() - Math.min(periodMs, 31 * 86400_000);
  const self = d.savings.since(since);
  const members = d.table.usable();
  const answers = await Promise.all(members.map(async (p) => {
    try {
      return { peerId: p.id, totals: await d.client.stats(p, since) };
    } catch (e) {
      return { peerId: p.id, error: (e as Error).message };
    }
  }));
  let site = self;
  for (const a of answers) if (a.totals) site = addTotals(site, a.totals);
  return { since: new Date(since).toISOString(), self: { peerId: d.selfId, totals: self }, peers: answers, site };
}

function peers(d: AdminDeps): PeerView[] {
  return d.table.all().map((p) => ({
    id: p.id, address: p.address, healthy: p.healthy, banned: d.table.isBanned(p),
    ...(d.table.isBanned(p) ? { banReason: p.banReason, bannedUntil: new Date(p.bannedUntil).toISOString() } : {}),
    lastSeen: p.lastOk ? new Date(p.lastOk).toISOString() : null, source: p.source,
  }));
}

function blobCounts(blobs: Array<{ complete: boolean }>): { blobs: number; partial: number } {
  return { blobs: blobs.length, partial: blobs.filter((b) => !b.complete).length };
}

function status(d: AdminDeps): StatusView {
  return {
    peerId: d.selfId, site: d.site, link: d.link, peerPort: d.peerPort(),
    peers: { healthy: d.table.usable().length, known: d.table.all().length },
    downloads: d.swarm.active().map((x) => x.progress()),
    cache: { usedBytes: d.store.usedBytes(), maxBytes: d.store.maxBytes, ...blobCounts(d.store.list()) },
    leases: d.swarm.coordinator.activeLeases(),
    savings24h: d.savings.since(Date.now() - 86400_000),
    memory: process.memoryUsage(),
  };
}

/** Finished fetches the dashboard keeps showing (with their chunk maps), newest first. */
const RECENT_FETCHES = 8;
const RECENT_FETCH_MS = 3600_000;

/** One blob on the dashboard: its progress and chunk map, whoever asked for it. */
function downloadView(d: AdminDeps, x: BlobDownload, path?: string) {
  const p = x.progress();
  return { ...p, kind: x.kind, ...(path !== undefined ? { path } : {}), map: x.chunkMap(), coordinator: p.coordinator === d.selfId ? 'this daemon' : p.coordinator };
}

function fetchView(d: AdminDeps, j: FetchJob) {
  const st = j.status();
  return {
    id: st.id, kind: st.kind, name: st.name ?? (st.kind === 'url' ? st.url!.replace(/^.*\//, '').slice(0, 80) || st.url!.slice(0, 80) : undefined), version: st.version,
    state: st.state, size: st.size, held: st.held, bytes: st.bytes,
    ...(st.waiting ? { waiting: st.waiting } : {}), ...(st.stalled ? { stalled: st.stalled } : {}), ...(st.error ? { error: st.error } : {}),
    createdAt: st.createdAt, ...(st.finishedAt ? { finishedAt: st.finishedAt } : {}),
    files: j.downloads.map(({ file, download }) => downloadView(d, download, file.path)),
  };
}

/** What the dashboard shows: this daemon, the site, its fetches and downloads with chunk maps, totals. */
export async function snapshot(d: AdminDeps) {
  const value = async (name: string, labels: Record<string, string> = {}) => {
    const m = await d.metrics.registry.getSingleMetric(name)?.get();
    return m?.values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((n, v) => n + v.value, 0) ?? 0;
  };
  const now = Date.now();
  const jobs = d.fetches.list();
  const running = jobs.filter((j) => !j.finishedAt);
  const finished = jobs.filter((j) => j.finishedAt && now - j.finishedAt.getTime() < RECENT_FETCH_MS)
    .sort((a, b) => b.finishedAt!.getTime() - a.finishedAt!.getTime()).slice(0, RECENT_FETCHES);
  const shown = [...running, ...finished];
  // Blobs no fetch job asked for: the apt proxy's, the mirror's and the URL form's downloads.
  const byJobs = new Set(shown.flatMap((j) => j.downloads.map((x) => x.download.blob.sha256)));
  const others = [...d.swarm.active(), ...d.swarm.recent()].filter((x, i, all) => !byJobs.has(x.blob.sha256) && all.findIndex((y) => y.blob.sha256 === x.blob.sha256) === i).slice(0, 16);
  return {
    time: now,
    ...status(d),
    peers: d.table.all().map((p) => ({ id: p.id, address: p.address, healthy: p.healthy, banned: d.table.isBanned(p), bytesFrom: p.bytesFrom })),
    downloads: others.map((x) => downloadView(d, x)),
    fetches: shown.map((j) => fetchView(d, j)),
    rates: d.rates.window(5),
    siteView: d.siteView.summary(),
    totals: { origin: await value('shoal_download_bytes_total', { source: 'origin' }), peer: await value('shoal_download_bytes_total', { source: 'peer' }), upload: await value('shoal_upload_bytes_total') },
  };
}

/** Server-sent events: a snapshot at once and then every second, until the client goes. */
async function events(d: AdminDeps, req: IncomingMessage, res: ServerResponse) {
  if (d.eventStreams.open >= MAX_EVENT_CLIENTS) throw new ShoalError('unavailable', 'too many event streams open');
  d.eventStreams.open++;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
  let open = true;
  // The chart's history first, so the page draws the last minutes at once.
  res.write(`event: history\ndata: ${JSON.stringify(d.rates.window())}\n\n`);
  const send = async () => {
    if (!open) return;
    const snap = await snapshot(d);
    if (open) res.write(`event: status\ndata: ${JSON.stringify(snap)}\n\n`);
  };
  const timer = setInterval(() => void send().catch(() => {}), 1000);
  req.once('close', () => { open = false; clearInterval(timer); d.eventStreams.open--; });
  await send();
}

/**
 * One fetch's progress as server-sent events until it ends; the last event
 * carries the final state and is sent the moment the fetch ends, so an agent
 * waiting on it learns at once. `?interval=MS` (50–5000, default 250) paces the progress events.
 */
async function fetchEvents(d: AdminDeps, id: string, url: URL, req: IncomingMessage, res: ServerResponse) {
  const job = d.fetches.get(id);
  if (!job) throw new ShoalError('not-found', `no fetch ${id}`);
  const iv = url.searchParams.get('interval');
  const intervalMs = iv === null ? 250 : Number(iv);
  if (!Number.isInteger(intervalMs) || intervalMs < 50 || intervalMs > 5000) throw new ShoalError('bad-request', 'interval must be an integer from 50 to 5000 (ms)');
  const ended = job.done.then(() => {}, () => {});
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
  let open = true;
  req.once('close', () => { open = false; });
  while (open) {
    const st = job.status();
    const peers = d.swarm.active().filter((x) => st.files.some((f) => f.blob === x.blob.sha256)).reduce((n, x) => Math.max(n, x.progress().peers), 0);
    const terminal = st.state === 'done' || st.state === 'failed' || st.state === 'cancelled';
    res.write(`event: ${terminal ? st.state : 'progress'}\ndata: ${JSON.stringify({ ...st, peers })}\n\n`);
    if (terminal) break;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([ended, new Promise((r) => { timer = setTimeout(r, intervalMs); })]);
    clearTimeout(timer);
  }
  res.end();
}

async function artifactFile(d: AdminDeps, name: string, version: string, filePath: string, req: IncomingMessage, res: ServerResponse) {
  const v = d.fetches.manifestByVersion(name, version);
  const file = v?.body.files.find((f) => f.path === filePath);
  if (!file) throw new ShoalError('not-found', `no file ${filePath} in ${name} ${version}`);
  const blob = d.store.get(file.sha256);
  if (!blob || !blob.complete) throw new ShoalError('not-found', `${filePath} of ${name} ${version} is not (completely) cached`);
  await serveBlob(blob, req, res);
}
