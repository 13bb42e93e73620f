/**
 * The peer protocol (HTTP/1.1): info, manifests, have-maps (long-poll),
 * verified byte ranges, and lease requests for blobs we coordinate. Serves
 * verified chunks only; every id, range and body is validated; nothing a peer
 * sends can crash the daemon.
 */
import type { SavingsTotals } from '../admin/savings.js';
import https from 'node:https';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ShoalError } from '../errors.js';
import { parseJsonBody, parseRange, readBody, sendError, sendJson } from '../common/http-util.js';
import { PEER_HEADER, type Identity } from './identity.js';
import type { TokenBucket } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { BlobStore } from '../store/blob-store.js';
import type { LeaseCoordinator } from '../swarm/coordinator.js';
import type { LeaseBoard } from '../swarm/lease-board.js';
import type { BufferPool } from '../store/buffer-pool.js';
import { guardConnections, PerKeyLimit } from './conn-guard.js';
import { CAPABILITIES, CHALLENGE_RE, HEX64, packBits, MAX_JSON_BYTES, PROTOCOL_VERSION, SOFTWARE, parseLeaseRequest, type HaveBody, type PeerInfo } from './wire.js';

export interface PeerServerDeps {
  /** Our key pair: proves /v1/info answers, checks who sends lease requests. */
  identity: Identity;
  site: string;
  store: BlobStore;
  coordinator: LeaseCoordinator;
  /** Our origin leases, shown in have-maps. */
  board: LeaseBoard;
  uploadBucket: TokenBucket;
  /** Buffers for serving ranges; their number bounds concurrent uploads. */
  buffers: BufferPool;
  manifest(id: string): Promise<Buffer | undefined>;
  /** This daemon's savings totals since a time (GET /v1/stats). */
  stats?(sinceMs: number): SavingsTotals;
  onUpload?(bytes: number): void;
  log: Logger;
  /** With a site secret: the TLS 1.3 PSK server settings (site-auth.ts). */
  tls?: import('node:tls').TlsOptions;
}

const MAX_WAIT_MS = 20_000;
const SEND_BUFFER = 1 << 20;
const THROTTLED_SLICE = 32 * 1024;
/** Longest one write of a range may wait for the asker to read (its send buffer is then taken back). */
const SEND_TIMEOUT_MS = 10_000;
/** How long a range request waits for a free send buffer before it is answered 503. */
const BUSY_WAIT_MS = 250;
/** Per remote address: sockets, share of the send buffers, long-poll waiters. */
const SOCKETS_PER_ADDRESS = 64;
const SOCKETS_TOTAL = 512;
/** Send buffers one address may hold: all but two, so one asker never takes them all, while an honest one (at most chunkConcurrency at a time) is never refused. */
const SEND_RESERVE = 2;
const WAITERS_PER_ADDRESS = 32;
const WAITERS_TOTAL = 2048;

interface Shares {
  sends: PerKeyLimit;
  waiters: PerKeyLimit;
  waiting: { n: number };
}

export function createPeerServer(d: PeerServerDeps): http.Server {
  const shares: Shares = { sends: new PerKeyLimit(Math.max(1, d.buffers.size - SEND_RESERVE)), waiters: new PerKeyLimit(WAITERS_PER_ADDRESS), waiting: { n: 0 } };
  const opts = { maxHeaderSize: 16 * 1024, requestTimeout: 60_000, headersTimeout: 10_000, keepAliveTimeout: 15_000 };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(d, shares, req, res).catch((e) => {
      if (!(e instanceof ShoalError)) d.log('error', 'peer request failed', { url: req.url, error: (e as Error).message });
      sendError(res, e);
    });
  };
  // A private site: TLS 1.3 with the site's PSK, or no byte at all (docs/security.md).
  const server: http.Server = d.tls ? https.createServer({ ...d.tls, ...opts, handshakeTimeout: 10_000 }, onRequest) : http.createServer(opts, onRequest);
  if (d.tls) server.on('tlsClientError', (_e, socket) => socket.destroy());
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\n\r\n`);
    // Closed for good, not half-closed: a client that never reads or closes (slowloris) would keep the descriptor.
    setTimeout(() => socket.destroy(), 1000).unref();
  });
  guardConnections(server, { perAddress: SOCKETS_PER_ADDRESS, total: SOCKETS_TOTAL }, (why, addr) => d.log('debug', 'peer socket refused', { why, addr }));
  return server;
}

const busy = (res: ServerResponse, message: string) => {
  res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
  res.end(JSON.stringify({ error: { code: 'peer-busy', message } }));
};

async function handle(d: PeerServerDeps, shares: Shares, req: IncomingMessage, res: ServerResponse) {
  const url = new URL(req.url ?? '/', 'http://peer');
  const parts = url.pathname.split('/').filter(Boolean);
  if (parts[0] !== 'v1') throw new ShoalError('not-found', 'unknown path');
  const [, what, id, ...rest] = parts;
  if (rest.length) throw new ShoalError('not-found', 'unknown path');
  if (req.method === 'GET' && what === 'info' && !id) {
    const challenge = url.searchParams.get('challenge');
    if (challenge !== null && !CHALLENGE_RE.test(challenge)) throw new ShoalError('bad-request', 'challenge must be 16 to 64 base64url characters');
    const info: PeerInfo = {
      peerId: d.identity.id, site: d.site, software: SOFTWARE, protocol: PROTOCOL_VERSION, capabilities: [...CAPABILITIES], publicKey: d.identity.publicKey,
      ...(challenge ? { proof: d.identity.infoProof(challenge, d.site) } : {}),
    };
    return sendJson(res, 200, info);
  }
  if (req.method === 'GET' && what === 'manifests' && id) {
    if (!HEX64.test(id)) throw new ShoalError('bad-request', 'manifest id must be 64 hex characters');
    const m = await d.manifest(id);
    if (!m) throw new ShoalError('not-found', 'manifest not held');
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': m.length });
    return void res.end(m);
  }
  if (req.method === 'GET' && what === 'have' && id) return have(d, shares, id, url, req, res);
  if ((req.method === 'GET' || req.method === 'HEAD') && what === 'blobs' && id) return blobRange(d, shares, id, req, res);
  if (req.method === 'POST' && what === 'leases' && !id) return lease(d, req, res);
  if (req.method === 'GET' && what === 'stats' && !id && d.stats) {
    const since = Number(url.searchParams.get('since'));
    if (!Number.isSafeInteger(since) || since < 0) throw new ShoalError('bad-request', 'since must be a time in ms');
    return sendJson(res, 200, { totals: d.stats(since) });
  }
  throw new ShoalError('not-found', 'unknown path');
}

async function have(d: PeerServerDeps, shares: Shares, id: string, url: URL, req: IncomingMessage, res: ServerResponse) {
  if (!HEX64.test(id)) throw new ShoalError('bad-request', 'blob id must be 64 hex characters');
  const blob = d.store.get(id);
  if (!blob) throw new ShoalError('not-found', 'blob not held');
  // The sequence counts changes of the held chunks and of our origin leases: both move forward only.
  const seq = () => blob.seq + d.board.seq(id);
  const w = url.searchParams.get('wait');
  if (w !== null) {
    if (!/^\d{1,15}$/.test(w)) throw new ShoalError('bad-request', 'wait must be a sequence number');
    const ctl = new AbortController();
    res.once('close', () => ctl.abort());
    if (seq() <= Number(w)) {
      // Waiters are bounded per address and in all; past that, ask again shortly (not a fault).
      const release = shares.waiting.n < WAITERS_TOTAL ? shares.waiters.take(req.socket.remoteAddress ?? '?') : undefined;
      if (!release) return busy(res, 'too many have-map waits');
      shares.waiting.n++;
      res.once('close', () => { release(); });
      await new Promise<void>((resolve) => {
        const done = () => { clearTimeout(timer); blob.off('change', done); d.board.off(`change:${id}`, done); ctl.signal.removeEventListener('abort', done); resolve(); };
        const timer = setTimeout(done, MAX_WAIT_MS);
        blob.on('change', done);
        d.board.on(`change:${id}`, done);
        ctl.signal.addEventListener('abort', done);
      });
      shares.waiting.n--;
      release();
    }
    if (ctl.signal.aborted) return;
  }
  const n = blob.chunkCount;
  const body: HaveBody = {
    blob: id, seq: seq(), chunks: n, complete: blob.complete, bitmap: packBits(n, (i) => blob.servable(i)).toString('base64'),
    ...(d.board.any(id) ? { leasing: packBits(n, (i) => d.board.has(id, i)).toString('base64') } : {}),
  };
  sendJson(res, 200, body);
}

async function blobRange(d: PeerServerDeps, shares: Shares, id: string, req: IncomingMessage, res: ServerResponse) {
  if (!HEX64.test(id)) throw new ShoalError('bad-request', 'blob id must be 64 hex characters');
  const blob = d.store.get(id);
  if (!blob) throw new ShoalError('not-found', 'blob not held');
  const header = req.headers.range;
  let start = 0;
  let end = blob.size - 1;
  if (header !== undefined) {
    const r = parseRange(header, blob.size);
    if (r === undefined) throw new ShoalError('bad-request', 'Range must be one "bytes=a-b" range');
    // Stored chunks are confirmed against their hash before a byte of them is sent (store/blob.ts).
    if (r === 'unsatisfiable' || !(await blob.confirmRange(r.start, r.end))) {
      res.writeHead(416, { 'content-range': `bytes */${blob.size}`, 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ error: { code: 'not-found', message: 'a byte of that range is not held (verified)' } }));
    }
    ({ start, end } = r);
  } else if (!blob.complete || (blob.size > 0 && !(await blob.confirmRange(0, blob.size - 1)))) {
    res.writeHead(416, { 'content-range': `bytes */${blob.size}` });
    return void res.end();
  }
  const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', 'content-length': end - start + 1, 'accept-ranges': 'bytes' };
  if (header !== undefined) headers['content-range'] = `bytes ${start}-${end}/${blob.size}`;
  if (req.method === 'HEAD' || blob.size === 0) {
    res.writeHead(header !== undefined ? 206 : 200, headers);
    return void res.end();
  }
  // Every send buffer taken: say so at once instead of sending a head and then nothing,
  // which the asker would take for a stall (and ban us for). It asks another holder.
  // One address holds at most its share of them, so the rest stay free for other peers.
  const share = shares.sends.take(req.socket.remoteAddress ?? '?');
  if (!share) return busy(res, 'this address holds its share of the upload slots');
  let lease;
  try {
    lease = await d.buffers.acquire(Math.min(SEND_BUFFER, end - start + 1), AbortSignal.timeout(BUSY_WAIT_MS));
  } catch {
    share();
    return busy(res, 'every upload slot is taken');
  }
  res.writeHead(header !== undefined ? 206 : 200, headers);
  const closed = new Promise<never>((_, reject) => res.once('close', () => reject(new Error('peer went away'))));
  closed.catch(() => {});
  try {
    await blob.sendRange(start, end, lease.buf, async (b) => {
      // Under an upload limit, pace in small slices so every concurrent request keeps moving
      // (whole-buffer writes would serve them one after another and look like stalls).
      const slice = d.uploadBucket.limited ? THROTTLED_SLICE : b.length;
      for (let off = 0; off < b.length; off += slice) {
        const piece = b.subarray(off, Math.min(b.length, off + slice));
        await Promise.race([d.uploadBucket.take(piece.length), closed]);
        // The callback fires once the socket took the bytes: only then may the buffer be reused.
        // An asker that stops reading holds a send buffer: after SEND_TIMEOUT_MS it loses it.
        let timer: NodeJS.Timeout | undefined;
        const sent = new Promise<void>((resolve, reject) => res.write(piece, (e) => (e ? reject(e) : resolve())));
        sent.catch(() => {});
        const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('send timeout')), SEND_TIMEOUT_MS); });
        try {
          await Promise.race([sent, closed, late]);
        } finally {
          clearTimeout(timer);
        }
        d.onUpload?.(piece.length);
      }
    });
    res.end();
  } catch {
    res.destroy();
  } finally {
    lease.release();
    share();
  }
}

async function lease(d: PeerServerDeps, req: IncomingMessage, res: ServerResponse) {
  const raw = await readBody(req, MAX_JSON_BYTES);
  // The requester is whoever proves it: a lease request can neither be sent nor altered in another's name.
  const requester = d.identity.verifyRequest(headerValue(req.headers[PEER_HEADER]), req.method ?? 'POST', req.url ?? '/', raw);
  const body = parseLeaseRequest(parseJsonBody(raw));
  if (!body) throw new ShoalError('bad-request', 'lease request must be {blob, peer, chunks, want?, max?, renew?, release?, done?}');
  if (body.peer !== requester) throw new ShoalError('unauthorized', `the lease request names ${body.peer} but is signed by ${requester}`);
  sendJson(res, 200, d.coordinator.handle(body, body.chunks));
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? undefined : v;
}

export function listen(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
