/**
 * A dishonest member: a real HTTP server speaking the peer protocol, with an
 * id chosen to rank first by HRW for one blob, that answers lease requests
 * in one of the ways a broken or hostile coordinator could.
 */
import https from 'node:https';
import { siteLink } from '../../daemon/peers/site-auth.js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Identity } from '../../daemon/peers/identity.js';
import { infoAnswer } from './fake-peer.js';
import { hrwRank } from '../../daemon/swarm/hrw.js';
import type { LeaseRequest } from '../../daemon/peers/wire.js';

export type CoordinatorLie = 'never-grants' | 'names-itself' | 'grants-everyone' | 'out-of-range' | 'negative' | 'not-a-run' | 'fast-polls';

export class FakeCoordinator {
  readonly id: string;
  readonly identity: Identity;
  leaseRequests = 0;
  havePolls = 0;
  private server: http.Server;
  port = 0;
  /** Answer /v1/info as someone else: their id and public key, signed with our own key. */
  claim: { peerId: string; publicKey: string } | undefined;

  /** `others`: the honest members' ids; the fake's id is ground until it ranks first for `blob`. */
  /** `secret`: a member of a private site (it holds the secret, so it speaks TLS with the site's PSK). */
  constructor(private lie: CoordinatorLie, private blob: { sha256: string; chunks: number }, others: string[], private site = 'default', secret?: string) {
    // Ranking first costs key generations: ids are derived from keys, so it grinds keys.
    let identity: Identity;
    do identity = Identity.generate(); while (hrwRank(blob.sha256, [identity.id, ...others])[0] !== identity.id);
    this.identity = identity;
    this.id = identity.id;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.handle(req, res).catch(() => res.destroy());
    this.server = secret ? https.createServer(siteLink([secret]).server, handler) : http.createServer(handler);
  }

  async start(host = '127.0.0.1') {
    await new Promise<void>((r) => this.server.listen(0, host, r));
    this.port = (this.server.address() as AddressInfo).port;
    return `${host}:${this.port}`;
  }

  async stop() {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = req.url ?? '/';
    const json = (o: unknown, status = 200) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(o)); };
    if (url.startsWith('/v1/info')) return json({ ...infoAnswer(this.identity, url, this.site, 'liar/1'), ...this.claim });
    if (url.startsWith(`/v1/have/${this.blob.sha256}`)) {
      this.havePolls++;
      // fast-polls: a have-map with nothing in it, answered at once however long the poller asked to wait.
      if (this.lie === 'fast-polls') return json({ blob: this.blob.sha256, seq: 1, chunks: this.blob.chunks, complete: false, bitmap: Buffer.alloc(Math.ceil(this.blob.chunks / 8)).toString('base64') });
      return json({ error: { code: 'not-found', message: 'blob not held' } }, 404);
    }
    if (url === '/v1/leases' && req.method === 'POST') {
      this.leaseRequests++;
      const parts: Buffer[] = [];
      for await (const b of req) parts.push(b as Buffer);
      const r = JSON.parse(Buffer.concat(parts).toString()) as LeaseRequest;
      const want = r.want ?? [];
      const answer = (granted: number[], held: Record<string, string> = {}) => json({ coordinator: this.id, granted, held });
      switch (this.lie) {
        case 'never-grants': case 'fast-polls': return answer([]);
        case 'names-itself': return answer([], Object.fromEntries(want.map((c) => [c, this.id])));
        case 'grants-everyone': return answer(want.slice(0, r.max ?? 8));
        case 'out-of-range': return answer([r.chunks + 3, r.chunks + 4]);
        case 'negative': return answer([-1, 0]);
        case 'not-a-run': return answer(want.length > 2 ? [want[0]!, want[2]!] : want);
      }
    }
    json({ error: { code: 'not-found', message: 'unknown path' } }, 404);
  }
}
