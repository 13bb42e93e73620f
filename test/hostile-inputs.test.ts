/** Malicious peers, a faulty origin, and bad requests: bad bytes never stored, the daemon keeps serving. */
import test from 'ava';
import { Identity, PEER_HEADER } from '../daemon/peers/identity.js';
import net from 'node:net';
import path from 'node:path';
import { FakePeer, type Misbehaviour } from './helpers/fake-peer.js';
import { makeRelease, originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald } from './helpers/site.js';
import { runShoal, sha256File, tmpDir } from './helpers/fixtures.js';

const MiB = 1 << 20;

test('malicious peers (corrupt, short, long, 200, wrong Content-Range, stall): all banned, zero bad bytes stored, download completes', async (t) => {
  const dir = await tmpDir(t);
  // A slow origin: the hostile peers, who claim every chunk, all get their turn first.
  const { rel } = await originWithRelease(t, dir, { size: 12 * MiB, bytesPerSec: 4 * MiB });
  const modes: Misbehaviour[] = ['corrupt', 'short', 'long', 'status200', 'wrong-range', 'stall'];
  const fakes = modes.map((m) => new FakePeer(m, { sha256: rel.sha256, size: rel.size, chunkSize: rel.chunkSize, file: rel.file }));
  const fakePorts = await Promise.all(fakes.map((f) => f.start()));
  t.teardown(() => Promise.all(fakes.map((f) => f.stop())));
  const [addr] = await peerAddresses(1);
  const d = await startShoald({ name: 'victim', dir: path.join(dir, 'victim'), peer: addr!, staticPeers: fakePorts.map((p) => `127.0.0.1:${p}`), trustedKeys: rel.trusted, config: { minPeerBytesPerSec: 1 * MiB, chunkConcurrency: 6 } });
  t.teardown(async () => { await d.client.close(); await d.kill('SIGKILL'); });
  for (;;) {
    if ((await d.client.peers()).filter((p) => p.healthy).length === fakes.length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const job = await d.client.createFetch({ manifestUrl: rel.manifestUrl });
  const r = await d.client.waitFetch(job.id, { intervalMs: 100 });
  t.is(r.state, 'done');
  const peers = await d.client.peers();
  for (const f of fakes) {
    const p = peers.find((x) => x.id === f.id);
    t.true(f.served > 0, `${f.id} (${modes[fakes.indexOf(f)]}) was tried; ${JSON.stringify(p)}`);
    t.true(p?.banned, `peer serving ${modes[fakes.indexOf(f)]} is banned (${p?.banReason}): ${JSON.stringify(p)} ${d.logs.filter((l) => l.includes(f.id)).join(' | ')}`);
  }
  const out = path.join(dir, 'out.bin');
  t.is((await runShoal(['fetch', rel.manifestUrl, '--api', d.api, '-o', out])).code, 0);
  t.is(await sha256File(out), rel.sha256);
  t.is(r.bytes.peer, 0, 'nothing from the hostile peers was stored');
});

test('origin faults (500s, resets, truncated bodies, slow trickle, ignored Range): completes by resuming ranges', async (t) => {
  const dir = await tmpDir(t);
  const { origin, url, rel } = await originWithRelease(t, dir, { size: 16 * MiB });
  origin.faults = { fail500: 3, resetAfterBytes: 300_000, resets: 3, truncateAfterBytes: 700_000, truncations: 2, trickleBytesPerSec: 2 * MiB, trickles: 1 };
  const [a1, a2] = await peerAddresses(2);
  const d = await startShoald({ name: 'solo', dir: path.join(dir, 'solo'), peer: a1!, staticPeers: [], trustedKeys: rel.trusted, config: { originConcurrency: 1, leaseRunChunks: 16 } });
  t.teardown(async () => { await d.client.close(); await d.kill('SIGKILL'); });
  const r = await d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id, { intervalMs: 100 });
  t.is(r.state, 'done');
  t.deepEqual([origin.faults.fail500, origin.faults.resets, origin.faults.truncations, origin.faults.trickles], [0, 0, 0, 0], 'every fault was hit');
  // Resumes start at the exact byte where a body broke off: nothing was fetched twice.
  t.is(origin.bytes(rel.rel), rel.size);

  // An origin that ignores Range (answers 200 with the whole file) still works.
  const rel2 = await makeRelease(path.join(dir, 'origin'), url, { size: 6 * MiB, version: '2.0.0', key: rel.key, sequence: 2 });
  origin.faults = { ignoreRange: true };
  const d2 = await startShoald({ name: 'solo2', dir: path.join(dir, 'solo2'), peer: a2!, staticPeers: [], trustedKeys: rel.trusted, config: { leaseRunChunks: 2 } });
  t.teardown(async () => { await d2.client.close(); await d2.kill('SIGKILL'); });
  const r2 = await d2.client.waitFetch((await d2.client.createFetch({ manifestUrl: rel2.manifestUrl })).id, { intervalMs: 100 });
  t.is(r2.state, 'done');
  const out = path.join(dir, 'out2.bin');
  t.is((await runShoal(['fetch', rel2.manifestUrl, '--api', d2.api, '-o', out])).code, 0);
  t.is(await sha256File(out), rel2.sha256);
});

function raw(host: string, port: number, request: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    let out = '';
    s.on('data', (d) => { out += d.toString('latin1'); });
    s.on('error', () => resolve(out));
    s.on('close', () => resolve(out));
    s.setTimeout(5000, () => s.destroy());
    // Write without half-closing: Node's server drops responses to half-closed sockets.
    s.write(request);
  });
}

const statusOf = (resp: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(resp)?.[1] ?? 0);

test('bad requests to the peer server get 4xx and the daemon keeps serving', async (t) => {
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 3 * MiB });
  const [addr] = await peerAddresses(1);
  const d = await startShoald({ name: 'srv', dir: path.join(dir, 'srv'), peer: addr!, staticPeers: [], trustedKeys: rel.trusted });
  t.teardown(async () => { await d.client.close(); await d.kill('SIGKILL'); });
  await d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
  const b = `/v1/blobs/${rel.sha256}`;
  const get = (p: string, headers = '') => raw(d.peerHost, d.peerPort, `GET ${p} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n${headers}\r\n`);
  const me = Identity.generate();
  const postLease = (body: string, signed = true) => raw(d.peerHost, d.peerPort, `POST /v1/leases HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${signed ? `${PEER_HEADER}: ${me.requestHeader('POST', '/v1/leases', Buffer.from(body))}\r\n` : ''}connection: close\r\n\r\n${body}`);
  const cases: Array<[string, Promise<string>, number]> = [
    ['good range', get(b, 'range: bytes=0-99\r\n'), 206],
    ['malformed range', get(b, 'range: bytes=abc\r\n'), 400],
    ['two ranges', get(b, 'range: bytes=0-1,5-6\r\n'), 400],
    ['reversed range', get(b, 'range: bytes=9-1\r\n'), 400],
    ['range past the end', get(b, `range: bytes=${rel.size}-${rel.size + 10}\r\n`), 416],
    ['traversal in id', get('/v1/blobs/../../etc/passwd'), 404],
    ['encoded traversal', get('/v1/blobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd'), 400],
    ['not hex', get('/v1/blobs/zz'), 400],
    ['unknown blob', get(`/v1/blobs/${'0'.repeat(64)}`, 'range: bytes=0-1\r\n'), 404],
    ['unknown have', get(`/v1/have/${'0'.repeat(64)}`), 404],
    ['bad wait', get(`/v1/have/${rel.sha256}?wait=-1`), 400],
    ['bad manifest id', get('/v1/manifests/..%2f..'), 400],
    ['unknown path', get('/admin'), 404],
    ['huge headers', get('/v1/info', `x-big: ${'a'.repeat(40_000)}\r\n`), 431],
    ['garbage', raw(d.peerHost, d.peerPort, 'NOT HTTP AT ALL\r\n\r\n'), 400],
    ['lease garbage', postLease('{"a":'), 400],
    ['lease bad shape', postLease(JSON.stringify({ blob: 'x', peer: 1, chunks: -1 })), 400],
    ['lease without proof of who sends it', postLease(JSON.stringify({ blob: rel.sha256, peer: me.id, chunks: 3, want: [0] }), false), 401],
    ['lease in another peer\'s name', postLease(JSON.stringify({ blob: rel.sha256, peer: 'someoneelse0', chunks: 3, want: [0] })), 401],
    ['lease too large', raw(d.peerHost, d.peerPort, 'POST /v1/leases HTTP/1.1\r\nhost: x\r\ncontent-length: 999999999\r\nconnection: close\r\n\r\n'), 413],
  ];
  for (const [name, resp, want] of cases) t.is(statusOf(await resp), want, name);
  const ok = await get('/v1/info');
  t.is(statusOf(ok), 200, 'still serving');
  t.is(d.proc.exitCode, null, 'daemon alive');
});
