/**
 * Private links on one network: two sites with different secrets never use each other;
 * a client without the site's PSK (wrong secret, no secret, plain HTTP) gets no byte;
 * a TLS client against an open site is refused (rotation: site-rotation.test.ts).
 */
import test from 'ava';
import path from 'node:path';
import tls from 'node:tls';
import { siteLink } from '../daemon/peers/site-auth.js';
import { originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald, waitForPeers } from './helpers/site.js';
import { tmpDir } from './helpers/fixtures.js';

const MiB = 1 << 20;
const SECRET_A = 'site-a-secret-0123456789';
const SECRET_B = 'site-b-secret-9876543210';

/** Speaks TLS to host:port with `opts` and sends GET /v1/info: the answer's first line, or the error. */
function tlsGet(hostPort: string, opts: tls.ConnectionOptions): Promise<string> {
  const [host, port] = [hostPort.slice(0, hostPort.lastIndexOf(':')), Number(hostPort.slice(hostPort.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    let got = '';
    const s = tls.connect({ host, port, ...opts }, () => s.write(`GET /v1/info HTTP/1.1\r\nhost: ${hostPort}\r\nconnection: close\r\n\r\n`));
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    s.on('data', (b: Buffer) => { got += b.toString('latin1'); });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
    s.on('close', () => resolve(got ? got.split('\r\n')[0]! : 'closed'));
  });
}

test('two sites with different secrets, all listing each other, never exchange a byte; no client without the PSK gets a byte', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 8 * MiB });
  const addrs = await peerAddresses(5);
  const daemons = await Promise.all(addrs.map((a, i) => startShoald({
    name: `s${i}`, dir: path.join(dir, `s${i}`), peer: a, staticPeers: addrs, trustedKeys: rel.trusted,
    // s4 is an open site: no secret, plain HTTP.
    config: i < 4 ? { siteSecret: i < 2 ? SECRET_A : SECRET_B } : {},
  })));
  t.teardown(() => Promise.all(daemons.map(async (d) => { await d.client.close(); await d.kill('SIGKILL'); })));
  await waitForPeers(daemons.slice(0, 4), 1);
  await new Promise((r) => setTimeout(r, 1500)); // several probe rounds: no cross-site peer may appear
  for (const [i, d] of daemons.slice(0, 4).entries()) {
    const peers = await d.client.peers();
    t.deepEqual(peers.map((p) => p.id), [daemons[i < 2 ? 1 - i : 5 - i]!.peerId], `${d.name} only knows its own site`);
  }
  t.deepEqual((await daemons[4]!.client.peers()).map((p) => p.id), [], 'the open site knows none of the private ones');

  // Raw clients against a daemon of site A: only the PSK of A gets an answer.
  const a0 = daemons[0]!.peer;
  const plain = await fetch(`http://${a0}/v1/info`).then((r) => `HTTP ${r.status}`, (e: Error) => `error ${(e.cause as NodeJS.ErrnoException)?.code ?? e.message}`);
  t.regex(plain, /^error/, `plain HTTP to a private site: ${plain}`);
  t.regex(await tlsGet(a0, siteLink([SECRET_B]).client), /^error/, 'the wrong secret');
  t.regex(await tlsGet(a0, { rejectUnauthorized: false, minVersion: 'TLSv1.3' }), /^error|^closed$/, 'TLS without any secret');
  t.is(await tlsGet(a0, siteLink([SECRET_A]).client), 'HTTP/1.1 200 OK', 'the right secret');
  // A server that authenticates with a certificate rather than the site key is refused by the daemons' client settings.
  const { execFileSync } = await import('node:child_process');
  const { readFileSync } = await import('node:fs');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=impostor'], { stdio: 'ignore' });
  const impostor = tls.createServer({ key: readFileSync(path.join(dir, 'k.pem')), cert: readFileSync(path.join(dir, 'c.pem')), minVersion: 'TLSv1.3' }, (s) => s.end('HTTP/1.1 200 OK\r\n\r\n'));
  await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
  t.teardown(() => impostor.close());
  t.regex(await tlsGet(`127.0.0.1:${(impostor.address() as import('node:net').AddressInfo).port}`, siteLink([SECRET_A]).client), /^error/, 'a certificate instead of the site key');
  // A TLS client against the open site: it speaks plain HTTP, the handshake fails.
  t.regex(await tlsGet(daemons[4]!.peer, siteLink([SECRET_A]).client), /^error/);

  // The daemons kept serving their real peers through all of that.
  const results = await Promise.all(daemons.slice(0, 4).map(async (d) => d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id)));
  t.is(origin.bytes(rel.rel), 2 * rel.size, 'each site pulled the artifact from the origin once');
  for (const r of results) t.is(r.bytes.origin + r.bytes.peer, rel.size);
  t.is(results[0]!.bytes.peer + results[1]!.bytes.peer, rel.size, 'site A shared within itself');
  t.is(results[2]!.bytes.peer + results[3]!.bytes.peer, rel.size, 'site B shared within itself');
});
