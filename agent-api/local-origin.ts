/**
 * A small local origin: serves a folder over HTTP with Range support and
 * counts every body byte it sends per path, optionally rate-limited like a WAN
 * uplink. The demo uses it as "the internet"; tests also make it misbehave on
 * demand (500s, resets, truncation, trickle, ignored Range) through `faults`.
 */
import { createReadStream, promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { TokenBucket } from '../daemon/common/limits.js';

export interface Faults {
  /** Answer the next N range requests with 500. */
  fail500?: number;
  /** Cut the connection after this many body bytes, for the next N responses. */
  resetAfterBytes?: number;
  resets?: number;
  /** End the body cleanly but early (short body), for the next N responses. */
  truncateAfterBytes?: number;
  truncations?: number;
  /** Send bodies at this rate (bytes/s) for the next N responses. */
  trickleBytesPerSec?: number;
  trickles?: number;
  /** Answer Range requests with 200 and the whole file. */
  ignoreRange?: boolean;
}

export class LocalOrigin {
  readonly bytesByPath = new Map<string, number>();
  requests = 0;
  /** Every range request answered, [start, end] inclusive (tests look for bytes served twice). */
  readonly ranges: Array<[number, number]> = [];
  /** Range responses being sent right now: id → bytes of the range (for "chunks in flight" bounds). */
  private active = new Map<number, number>();
  private nextId = 0;
  faults: Faults = {};
  private server: http.Server;
  private bucket: TokenBucket;
  url = '';

  constructor(readonly root: string, opts: { bytesPerSec?: number } = {}) {
    this.bucket = new TokenBucket(opts.bytesPerSec ?? 0, 0.05);
    this.server = http.createServer((req, res) => {
      this.serve(req, res).catch(() => res.destroy());
    });
  }

  async start(host = '127.0.0.1', port = 0): Promise<string> {
    await new Promise<void>((r) => this.server.listen(port, host, r));
    const a = this.server.address() as AddressInfo;
    this.url = `http://${host}:${a.port}`;
    return this.url;
  }

  async stop() {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  /** Total size of the ranges whose responses are in progress at this instant. */
  inFlightRangeBytes(): number {
    let n = 0;
    for (const v of this.active.values()) n += v;
    return n;
  }

  bytes(p?: string): number {
    if (p) return this.bytesByPath.get(p) ?? 0;
    let n = 0;
    for (const v of this.bytesByPath.values()) n += v;
    return n;
  }

  private count(p: string, n: number) {
    this.bytesByPath.set(p, (this.bytesByPath.get(p) ?? 0) + n);
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse) {
    this.requests++;
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://o').pathname).replace(/^\/+/, '');
    const file = path.join(this.root, rel);
    if (!file.startsWith(this.root)) { res.writeHead(400); return void res.end(); }
    const st = await fs.stat(file).catch(() => undefined);
    if (!st?.isFile()) { res.writeHead(404); return void res.end(); }
    const f = this.faults;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && f.fail500 && f.fail500 > 0) { f.fail500--; res.writeHead(500); return void res.end('boom'); }
    let start = 0;
    let end = st.size - 1;
    if (range && !f.ignoreRange) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), st.size - 1) : st.size - 1;
      if (start > end) { res.writeHead(416, { 'content-range': `bytes */${st.size}` }); return void res.end(); }
      this.ranges.push([start, end]);
      res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${st.size}`, 'content-length': end - start + 1, 'accept-ranges': 'bytes' });
    } else {
      res.writeHead(200, { 'content-length': st.size, 'accept-ranges': 'bytes' });
    }
    if (req.method === 'HEAD') return void res.end();
    let limit = end - start + 1;
    let reset = false;
    let trickle = 0;
    if (range && f.resets && f.resets > 0 && f.resetAfterBytes !== undefined) { f.resets--; limit = Math.min(limit, f.resetAfterBytes); reset = true; }
    else if (range && f.truncations && f.truncations > 0 && f.truncateAfterBytes !== undefined) { f.truncations--; limit = Math.min(limit, f.truncateAfterBytes); }
    if (range && f.trickles && f.trickles > 0 && f.trickleBytesPerSec) { f.trickles--; trickle = f.trickleBytesPerSec; }
    const trickleBucket = trickle ? new TokenBucket(trickle, 0.1) : undefined;
    let sent = 0;
    const id = this.nextId++;
    this.active.set(id, end - start + 1);
    const stream = createReadStream(file, { start, end: start + limit - 1, highWaterMark: 64 * 1024 });
    res.on('close', () => { stream.destroy(); this.active.delete(id); });
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      await this.bucket.take(chunk.length);
      if (trickleBucket) await trickleBucket.take(chunk.length);
      if (res.destroyed) return;
      this.count(rel, chunk.length);
      sent += chunk.length;
      if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
    }
    if (reset || sent < end - start + 1) {
      // Reset or truncated: the declared length was not met; kill the socket so the client sees it.
      res.socket?.destroy();
      return;
    }
    res.end();
  }
}
