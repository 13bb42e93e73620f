/**
 * HTTP client for the peer protocol. Everything a peer says is untrusted:
 * JSON bodies are size-capped and shape-checked, byte ranges must come back as
 * 206 with the exact Content-Range and length, and slow transfers are cut.
 */
import { parseTotals, type SavingsTotals } from '../admin/savings.js';
import net from 'node:net';
import { Agent, buildConnector } from 'undici';
import { ShoalError } from '../errors.js';
import { discard } from '../common/http-util.js';
import { randomBytes } from 'node:crypto';
import { PEER_HEADER, verifyInfoProof, type Identity } from './identity.js';
import { RangeReader } from './range-reader.js';
import { MAX_JSON_BYTES as MAX_JSON, parseHave, parseInfo, parseLeaseResponse, paths, type HaveMap, type LeaseRequest, type LeaseResponse, type PeerInfo } from './wire.js';

export interface PeerAddress {
  url: string;
}



/** The source address for a destination: ours if it is a specific address of the same family. */
export function sourceFor(listenHost: string | undefined): (dest: string) => string | undefined {
  const fam = listenHost ? net.isIP(listenHost) : 0;
  if (!fam || listenHost === '0.0.0.0' || listenHost === '::') return () => undefined;
  return (dest) => (net.isIP(dest.replace(/^\[|\]$/g, '')) === fam ? listenHost : undefined);
}

export class PeerClient {
  private agent: Agent;
  private ranges: RangeReader;
  constructor(private opts: {
    requestTimeoutMs: number; minBytesPerSec: number; identity?: Identity;
    /** With a site secret: the TLS 1.3 PSK client settings (site-auth.ts); peers are then https:// URLs. */
    tls?: import('node:tls').ConnectionOptions;
    /** Our peer listener's own address when it is a specific one: connections come from it (peers count by address). */
    localAddress?: string;
  }) {
    const base = buildConnector({ timeout: 3000, ...(opts.tls ?? {}) } as buildConnector.BuildOptions);
    const local = sourceFor(opts.localAddress);
    this.agent = new Agent({
      connections: 16, headersTimeout: opts.requestTimeoutMs, bodyTimeout: opts.requestTimeoutMs, keepAliveTimeout: 10_000,
      connect: (o, cb) => base({ ...o, localAddress: local(o.hostname) ?? null }, cb),
    });
    this.ranges = new RangeReader({ connectTimeoutMs: 3000, headersTimeoutMs: opts.requestTimeoutMs, idleMs: 10_000, localAddress: local, ...(opts.tls ? { tls: opts.tls } : {}) });
  }

  private async json<T>(peer: PeerAddress, method: 'GET' | 'POST', path: string, body?: unknown, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<{ status: number; data: T | undefined }> {
    const signal = anySignal(opts.signal, AbortSignal.timeout(opts.timeoutMs ?? this.opts.requestTimeoutMs));
    const bytes = body ? Buffer.from(JSON.stringify(body)) : undefined;
    // Requests with a body (leases) prove who sends them: the coordinator takes the requester from the proof.
    const proof: Record<string, string> = bytes && this.opts.identity ? { [PEER_HEADER]: this.opts.identity.requestHeader(method, path, bytes) } : {};
    const res = await this.agent.request({
      origin: peer.url, path, method, signal,
      headers: bytes ? { 'content-type': 'application/json', ...proof } : {},
      body: bytes,
    });
    const parts: Buffer[] = [];
    let n = 0;
    for await (const b of res.body as AsyncIterable<Buffer>) {
      n += b.length;
      if (n > MAX_JSON) { discard(res.body); throw new ShoalError('peer-protocol', `${peer.url}${path}: answer larger than ${MAX_JSON} bytes`); }
      parts.push(b);
    }
    if (res.statusCode >= 300) return { status: res.statusCode, data: undefined };
    try {
      return { status: res.statusCode, data: JSON.parse(Buffer.concat(parts).toString('utf8')) as T };
    } catch {
      throw new ShoalError('peer-protocol', `${peer.url}${path}: answer is not JSON`);
    }
  }

  async info(peer: PeerAddress, timeoutMs = 3000): Promise<PeerInfo> {
    const challenge = randomBytes(18).toString('base64url');
    const { status, data } = await this.json<unknown>(peer, 'GET', paths.info(challenge), undefined, { timeoutMs });
    const info = status === 200 ? parseInfo(data) : undefined;
    if (!info) throw new ShoalError(status === 200 ? 'peer-protocol' : 'peer-refused', `${peer.url}: bad /v1/info answer (HTTP ${status})`);
    if (!verifyInfoProof(info, challenge, info.site)) throw new ShoalError('peer-protocol', `${peer.url}: its /v1/info does not prove that it holds the key of ${info.peerId}`);
    return info;
  }

  /** Have-map of a blob; with `wait`, long-polls until the peer's seq moves past it. Undefined if the peer lacks the blob. */
  async have(peer: PeerAddress, blob: string, chunks: number, wait: number | undefined, signal?: AbortSignal): Promise<HaveMap | undefined> {
    const { status, data } = await this.json<unknown>(peer, 'GET', paths.have(blob, wait), undefined, { signal, timeoutMs: 30_000 });
    if (status === 404) return undefined;
    const have = status === 200 ? parseHave(data, chunks) : undefined;
    if (!have) throw new ShoalError(status === 200 ? 'peer-protocol' : 'peer-refused', `${peer.url}: bad have-map for ${blob.slice(0, 12)} (HTTP ${status})`);
    return have;
  }

  /** A peer's savings totals since a time (for the site's figure in `shoal stats`). */
  async stats(peer: PeerAddress, sinceMs: number, signal?: AbortSignal): Promise<SavingsTotals> {
    const { status, data } = await this.json<{ totals?: unknown }>(peer, 'GET', paths.stats(sinceMs), undefined, { signal, timeoutMs: 5000 });
    const totals = status === 200 ? parseTotals(data?.totals) : undefined;
    if (!totals) throw new ShoalError(status === 200 ? 'peer-protocol' : 'peer-refused', `${peer.url}: no usable stats (HTTP ${status})`);
    return totals;
  }

  async lease(peer: PeerAddress, req: LeaseRequest, signal?: AbortSignal): Promise<LeaseResponse> {
    const { status, data } = await this.json<unknown>(peer, 'POST', paths.leases, req, { signal, timeoutMs: 5000 });
    const res = status === 200 ? parseLeaseResponse(data) : undefined;
    if (!res) throw new ShoalError(status === 200 ? 'peer-protocol' : 'peer-refused', `${peer.url}: lease request refused (HTTP ${status})`);
    return res;
  }

  async manifest(peer: PeerAddress, id: string, maxBytes: number): Promise<Buffer | undefined> {
    const path = paths.manifest(id);
    const res = await this.agent.request({ origin: peer.url, path, method: 'GET', signal: AbortSignal.timeout(this.opts.requestTimeoutMs) });
    if (res.statusCode !== 200) { discard(res.body); return undefined; }
    const parts: Buffer[] = [];
    let n = 0;
    for await (const b of res.body as AsyncIterable<Buffer>) {
      n += b.length;
      if (n > maxBytes) { discard(res.body); return undefined; }
      parts.push(b);
    }
    return Buffer.concat(parts);
  }

  /**
   * Bytes [start, end] of a blob from a peer into `into` (exactly end-start+1
   * bytes), read straight into it (range-reader.ts). Rejects anything but a 206
   * with the exact Content-Range and length, and stalled or too-slow transfers.
   * `onProgress(n)`: bytes [0, n) of `into` are filled.
   */
  async range(peer: PeerAddress, blob: string, start: number, end: number, into: Buffer, signal?: AbortSignal, minBytesPerSec = this.opts.minBytesPerSec, onProgress?: (got: number) => void): Promise<void> {
    const want = end - start + 1;
    if (into.length !== want) throw new Error('buffer size mismatch');
    const path = paths.blob(blob);
    const t0 = performance.now();
    let got = 0;
    let lastByte = t0;
    const stall = new AbortController();
    // A stall: no byte at all for 10 s, or after 5 s an average below the floor. A short
    // window would mistake a peer that paces a deliberate upload limit, or one on a machine
    // busy for a few seconds, for a stalled one.
    const watchdog = setInterval(() => {
      const now = performance.now();
      const secs = (now - t0) / 1000;
      if (now - lastByte > 10_000 || (secs > 5 && got / secs < minBytesPerSec)) stall.abort(new ShoalError('peer-stall', `${peer.url}: transfer stalled (${got} of ${want} bytes)`));
    }, 250);
    try {
      await this.ranges.read({
        url: peer.url, path, headers: {}, start, end, into,
        signal: anySignal(signal, stall.signal),
        onProgress: (n) => { got = n; lastByte = performance.now(); onProgress?.(n); },
      });
    } finally {
      clearInterval(watchdog);
    }
  }

  async close() {
    this.ranges.close();
    await this.agent.close();
  }
}

export function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal {
  const list = signals.filter((s): s is AbortSignal => !!s);
  return list.length === 1 ? list[0]! : AbortSignal.any(list);
}
