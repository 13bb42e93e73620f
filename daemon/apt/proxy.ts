/**
 * The apt proxy (`aptListen`, 127.0.0.1:3142 by default): apt's
 * `Acquire::http::Proxy` (absolute-form request targets) or the path form
 * `http://host:3142/<origin-host>/<path>` (and `/https/<origin-host>/<path>`).
 *
 * - InRelease / Release / Release.gpg: fetched by this daemon from the origin
 *   (revalidated with the validators of its last copy), checked with gpgv
 *   against the host's keyrings, and never taken from a peer.
 * - Indexes the verified Release lists, and .debs the verified Packages
 *   indexes name: content-addressed blobs, fetched once per site and answered
 *   only once their SHA-256 matched.
 * - Everything else, and any shared fetch that fails, passes through to the
 *   origin unshared (apt checks hashes and signatures itself). CONNECT (https
 *   repositories) is tunnelled to port 443.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import { writeFileAtomic } from '../../manifests/atomic-file.js';
import net from 'node:net';
import { pipeline } from 'node:stream/promises';
import { ShoalError } from '../errors.js';
import type { Logger } from '../common/log.js';
import { discard, sendError } from '../common/http-util.js';
import { setNewest } from '../common/limits.js';
import type { Content } from '../frontends/content.js';
import { serveBlob } from '../frontends/serve.js';
import type { OriginClient, Validators } from '../origin/origin-client.js';
import { AptRepos } from './repos.js';
import { MAX_RELEASE_BYTES, verifyRelease } from './release.js';

export interface AptProxyDeps {
  content: Content;
  origin: Pick<OriginClient, 'revalidate' | 'passThrough'>;
  /** Keyring files to check Release signatures against (read when a Release arrives). */
  keyrings(): Promise<string[]>;
  log: Logger;
  /** Where the last verified Release files are kept, so a restarted daemon knows its suites before apt asks again. */
  stateDir: string;
  /** Bytes handed out: from a blob already complete here, or passed through unshared. */
  counted(how: 'local' | 'unshared', bytes: number): void;
}

/** Request headers a pass-through forwards (no hop-by-hop ones, no proxy credentials). */
const FORWARD = ['range', 'if-range', 'if-modified-since', 'if-none-match', 'user-agent', 'accept', 'cache-control', 'pragma'];
/** Answer headers relayed back. */
const RELAY = ['content-type', 'content-length', 'content-range', 'accept-ranges', 'last-modified', 'etag', 'cache-control', 'expires', 'date'];
const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const MAX_CACHED_RELEASES = 128;
const TUNNEL_IDLE_MS = 5 * 60_000;

export interface AptProxy {
  server: http.Server;
  repos: AptRepos;
  /** Reads (and verifies again) the Release files kept by the last run. */
  load(): Promise<void>;
}

export function createAptProxy(d: AptProxyDeps): AptProxy {
  const repos = new AptRepos(async (signed) => verifyRelease(signed, await d.keyrings()), (level, msg, fields) => d.log(level, msg, fields));
  /** The last copy of each Release file, with its validators: a 304 keeps the view it gave. */
  const releases = new Map<string, { body: Buffer } & Validators>();
  const server = http.createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 0, headersTimeout: 15_000, keepAliveTimeout: 30_000 }, (req, res) => {
    handle(req, res).catch((e) => {
      if (!(e instanceof ShoalError)) d.log('error', 'apt request failed', { url: req.url?.slice(0, 300), error: (e as Error).stack });
      sendError(res, e);
    });
  });
  server.on('clientError', (_e, socket) => socket.destroy());
  server.on('connect', (req, socket, head) => tunnel(req.url ?? '', socket as net.Socket, head));

  async function handle(req: IncomingMessage, res: ServerResponse) {
    // The Proxy-Auto-Detect helper's question: is the local proxy up?
    if (req.url === '/_shoal/ping') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('shoal apt proxy\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new ShoalError('bad-request', `${String(req.method).slice(0, 16)} is not proxied: GET and HEAD only`);
    const u = targetUrl(req.url ?? '/');
    const addr = server.address();
    if (typeof addr === 'object' && addr && (u.port || '80') === String(addr.port) && ['127.0.0.1', 'localhost', '[::1]', addr.address].includes(u.hostname)) {
      throw new ShoalError('bad-request', 'the request names this proxy itself');
    }
    let t = repos.classify(u);
    const missing = t.kind === 'pass' ? repos.indexFor(u) : undefined;
    if (missing) {
      // A .deb of a verified suite whose Packages index is not read here (say, since a restart):
      // read it now, fetched through the site like any index, and look again.
      await d.content.complete({ sha256: missing.sha256, size: missing.size, urls: [`${missing.dist}${missing.name}`], kind: 'apt' }, { signal: AbortSignal.timeout(120_000) })
        .then(({ blob }) => (blob.size > 0 ? repos.readIndex(missing.dist, missing.name, missing.sha256, () => blob.openRead(0, blob.size - 1)) : undefined))
        .catch((e: Error) => d.log('warn', 'apt: Packages index not fetched; the .deb passes through unshared', { index: `${missing.dist}${missing.name}`, error: e.message }));
      t = repos.classify(u);
    }
    if (t.kind === 'release') return release(u, t.dist, t.file, req, res);
    if (t.kind === 'blob') {
      const ctl = new AbortController();
      res.once('close', () => ctl.abort(new ShoalError('aborted', 'apt went away')));
      let got;
      try {
        got = await d.content.complete({ sha256: t.sha256, size: t.size, urls: [u.href], kind: 'apt' }, { signal: ctl.signal });
      } catch (e) {
        if (ctl.signal.aborted) return;
        // The origin's bytes do not match what the Release vouched for (a mirror mid-sync), or no
        // source answers: apt gets the origin's answer as it is, and judges it by its own hashes.
        d.log('warn', 'apt: shared fetch failed, passing through', { url: u.href, code: (e as ShoalError).code, error: (e as Error).message });
        return passThrough(u, req, res);
      }
      const { blob, local } = got;
      // A Packages index is read for its .deb hashes before apt hears back, so the .debs it
      // asks for next are known.
      if (t.index && !repos.hasIndex(t.sha256) && blob.size > 0) await repos.readIndex(t.index.dist, t.index.name, t.sha256, () => blob.openRead(0, blob.size - 1));
      const sent = await serveBlob(blob, req, res, { 'content-type': t.what === 'deb' ? 'application/vnd.debian.binary-package' : 'application/octet-stream' });
      if (local) d.counted('local', sent);
      return;
    }
    return passThrough(u, req, res);
  }

  async function release(u: URL, dist: string, file: 'InRelease' | 'Release' | 'Release.gpg', req: IncomingMessage, res: ServerResponse) {
    const known = releases.get(u.href);
    let got;
    try {
      got = await d.origin.revalidate(u.href, MAX_RELEASE_BYTES, known ?? {}, AbortSignal.timeout(60_000));
    } catch (e) {
      if ((e as ShoalError).code === 'not-found') {
        releases.delete(u.href);
        res.writeHead(404, { 'content-type': 'text/plain' });
        return void res.end('not found at the origin\n');
      }
      throw e;
    }
    const copy = got.status === 304 && known ? known : { body: got.body ?? Buffer.alloc(0), ...(got.etag ? { etag: got.etag } : {}), ...(got.lastModified ? { lastModified: got.lastModified } : {}) };
    setNewest(releases, u.href, copy, MAX_CACHED_RELEASES);
    if (got.status === 200) await keep(u.href, copy).catch((e: Error) => d.log('warn', 'apt: cannot keep a Release file', { error: e.message }));
    // Checked before apt hears back: the indexes it asks for next are then known.
    await repos.releaseFetched(dist, file, copy.body);
    const validators = { ...(copy.etag ? { etag: copy.etag } : {}), ...(copy.lastModified ? { 'last-modified': copy.lastModified } : {}) };
    const unchanged = (copy.etag && req.headers['if-none-match'] === copy.etag) || (!req.headers['if-none-match'] && copy.lastModified && req.headers['if-modified-since'] === copy.lastModified);
    if (unchanged) return void res.writeHead(304, validators).end();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': copy.body.length, 'cache-control': 'no-store', ...validators });
    res.end(req.method === 'HEAD' ? undefined : copy.body);
  }

  async function passThrough(u: URL, req: IncomingMessage, res: ServerResponse) {
    const headers: Record<string, string> = {};
    for (const h of FORWARD) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h] as string;
    const ctl = new AbortController();
    res.once('close', () => ctl.abort());
    let up;
    try {
      up = await d.origin.passThrough(u.href, req.method === 'HEAD' ? 'HEAD' : 'GET', headers, ctl.signal);
    } catch (e) {
      if (ctl.signal.aborted) return;
      throw new ShoalError('origin-error', `${u.href}: ${(e as Error).message}`);
    }
    const out: http.OutgoingHttpHeaders = {};
    for (const h of RELAY) if (up.headers[h] !== undefined) out[h] = up.headers[h];
    res.writeHead(up.statusCode, out);
    let n = 0;
    up.body.on('data', (b: Buffer) => { n += b.length; });
    await pipeline(up.body, res).catch(() => { discard(up.body); res.destroy(); });
    d.counted('unshared', n);
  }

  function tunnel(target: string, socket: net.Socket, head: Buffer) {
    socket.on('error', () => {});
    const m = /^([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/.exec(target);
    // Only https: the proxy is no general-purpose tunnel.
    if (!m || m[2] !== '443') return void socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
    const up = net.connect(443, m[1]!.replace(/^\[|\]$/g, ''));
    up.setTimeout(TUNNEL_IDLE_MS, () => up.destroy());
    socket.setTimeout(TUNNEL_IDLE_MS, () => socket.destroy());
    up.once('connect', () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n'));
    socket.once('close', () => up.destroy());
    up.once('close', () => socket.destroy());
  }

  const keptDir = path.join(d.stateDir, 'apt-releases');
  const keptFile = (url: string) => path.join(keptDir, `${createHash('sha256').update(url).digest('hex').slice(0, 32)}.json`);
  async function keep(url: string, copy: { body: Buffer } & Validators) {
    await fs.mkdir(keptDir, { recursive: true, mode: 0o750 });
    await writeFileAtomic(keptFile(url), JSON.stringify({ url, ...copy, body: copy.body.toString('base64') }));
  }

  async function load() {
    const files = (await fs.readdir(keptDir).catch(() => [])).filter((f) => f.endsWith('.json')).slice(0, MAX_CACHED_RELEASES);
    const kept: Array<{ url: string; body: Buffer } & Validators> = [];
    for (const f of files) {
      try {
        const j = JSON.parse(await fs.readFile(path.join(keptDir, f), 'utf8')) as { url: string; body: string; etag?: string; lastModified?: string };
        if (keptFile(j.url) !== path.join(keptDir, f)) throw new Error('not the file of its URL');
        kept.push({ url: j.url, body: Buffer.from(j.body, 'base64'), ...(j.etag ? { etag: j.etag } : {}), ...(j.lastModified ? { lastModified: j.lastModified } : {}) });
      } catch {
        await fs.rm(path.join(keptDir, f), { force: true });
      }
    }
    // Release before its Release.gpg, as apt asks for them.
    for (const k of kept.sort((a, b) => a.url.localeCompare(b.url))) {
      const t = repos.classify(new URL(k.url));
      if (t.kind !== 'release') continue;
      releases.set(k.url, k);
      await repos.releaseFetched(t.dist, t.file, k.body);
    }
  }

  return { server, repos, load };
}

/** The origin URL of a proxy request: absolute-form (`GET http://host/path`) or the path form (`/host/path`, `/https/host/path`). */
export function targetUrl(raw: string): URL {
  let u: URL;
  if (/^https?:\/\//i.test(raw)) {
    try {
      u = new URL(raw);
    } catch {
      throw new ShoalError('bad-request', 'the request target is not a URL');
    }
  } else {
    const parts = raw.split('/');
    const https = parts[1] === 'https';
    const host = parts[https ? 2 : 1] ?? '';
    if (!HOST_RE.test(host)) throw new ShoalError('bad-request', 'expected /<origin-host>/<path> (or /https/<origin-host>/<path>)');
    u = new URL(`${https ? 'https' : 'http'}://${host}/${parts.slice(https ? 3 : 2).join('/')}`);
  }
  if (u.username || u.password) throw new ShoalError('bad-request', 'credentials in the URL are not proxied');
  if (!HOST_RE.test(u.host)) throw new ShoalError('bad-request', 'the origin host is not a host name or address');
  return u;
}
