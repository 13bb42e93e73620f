/**
 * A hostile peer speaking the peer protocol: it claims to hold every chunk of
 * a blob, then misbehaves when asked for bytes.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Identity } from '../../daemon/peers/identity.js';
import { promises as fs } from 'node:fs';

export type Misbehaviour = 'corrupt' | 'short' | 'long' | 'status200' | 'wrong-range' | 'stall';

export class FakePeer {
  private identity = Identity.generate();
  readonly id = this.identity.id;
  served = 0;
  private server: http.Server;
  port = 0;

  constructor(private mode: Misbehaviour, private blob: { sha256: string; size: number; chunkSize: number; file: string }, private site = 'default') {
    this.server = http.createServer((req, res) => void this.handle(req, res).catch(() => res.destroy()));
  }

  async start(port = 0) {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }

  async stop() {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = req.url ?? '/';
    const json = (o: unknown) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(o)); };
    if (url.startsWith('/v1/info')) return json(infoAnswer(this.identity, url, this.site, 'evil/1'));
    if (url.startsWith(`/v1/have/${this.blob.sha256}`)) {
      const n = Math.ceil(this.blob.size / this.blob.chunkSize);
      const bits = Buffer.alloc(Math.ceil(n / 8), 0xff);
      if (url.includes('wait=')) await new Promise((r) => setTimeout(r, 1000));
      return json({ blob: this.blob.sha256, seq: 1, chunks: n, complete: true, bitmap: bits.toString('base64') });
    }
    if (url === `/v1/blobs/${this.blob.sha256}`) {
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (!m) { res.writeHead(400); return void res.end(); }
      const start = Number(m[1]);
      const end = Number(m[2]);
      const fh = await fs.open(this.blob.file, 'r');
      const real = Buffer.alloc(end - start + 1);
      await fh.read(real, 0, real.length, start);
      await fh.close();
      this.served++;
      const cr = `bytes ${start}-${end}/${this.blob.size}`;
      switch (this.mode) {
        case 'corrupt': real[real.length >> 1] ^= 0xff; res.writeHead(206, { 'content-range': cr, 'content-length': real.length }); return void res.end(real);
        case 'short': res.writeHead(206, { 'content-range': cr, 'content-length': real.length }); res.write(real.subarray(0, real.length - 100)); return void res.socket?.destroy();
        case 'long': res.writeHead(206, { 'content-range': cr }); res.write(real); return void res.end(randomBytes(4096));
        case 'status200': res.writeHead(200, { 'content-length': real.length }); return void res.end(real);
        case 'wrong-range': res.writeHead(206, { 'content-range': `bytes ${start + 1}-${end + 1}/${this.blob.size}`, 'content-length': real.length }); return void res.end(real);
        case 'stall': res.writeHead(206, { 'content-range': cr, 'content-length': real.length }); res.flushHeaders(); return; // never sends a byte
      }
    }
    // A well-formed lease answer that grants nothing: the test is about the bytes it serves.
    if (url === '/v1/leases') return json({ coordinator: this.id, granted: [], held: {} });
    res.writeHead(404);
    res.end();
  }
}

/** A /v1/info answer that proves `identity` for the challenge in `url`. */
export function infoAnswer(identity: Identity, url: string, site: string, software: string) {
  const challenge = new URL(url, 'http://x').searchParams.get('challenge') ?? '';
  return { peerId: identity.id, site, software, protocol: 1, capabilities: [], publicKey: identity.publicKey, proof: identity.infoProof(challenge, site) };
}
