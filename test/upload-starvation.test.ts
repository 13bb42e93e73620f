/** Askers that never read cannot stop a holder's uploads, nor get it banned by the peers it serves. */
import test from 'ava';
import net from 'node:net';
import path from 'node:path';
import { tmpDir } from './helpers/fixtures.js';
import { originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald, waitForPeers } from './helpers/site.js';
import { until } from './helpers/until.js';

const MiB = 1 << 20;

test('eight connections that ask for ranges and never read do not stop a real peer\'s fetch, and the holder is not banned', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 32 * MiB, chunkSize: 4 * MiB });
  const [a, b] = await peerAddresses(2);
  const seed = await startShoald({ name: 'seed', dir: path.join(dir, 'seed'), peer: a!, staticPeers: [], trustedKeys: rel.trusted });
  t.teardown(() => seed.kill('SIGKILL'));
  t.is((await seed.client.waitFetch((await seed.client.createFetch({ manifestUrl: rel.manifestUrl })).id)).state, 'done');
  // Eight askers take every upload slot of the seed and then stop reading.
  const hogs = await Promise.all(Array.from({ length: 8 }, () => new Promise<net.Socket>((resolve) => {
    const s = net.connect(seed.peerPort, seed.peerHost, () => {
      s.write(`GET /v1/blobs/${rel.sha256} HTTP/1.1\r\nhost: x\r\nrange: bytes=0-${rel.size - 1}\r\n\r\n`);
      s.pause();
      resolve(s);
    });
    s.on('error', () => {});
  })));
  t.teardown(() => { for (const s of hogs) s.destroy(); });
  // One address holds all but two of the send buffers: a ninth ask from it is told busy at once.
  const ninth = await fetch(`http://${seed.peer}/v1/blobs/${rel.sha256}`, { headers: { range: 'bytes=0-99' } });
  t.is(ninth.status, 503);
  t.regex(await ninth.text(), /its share of the upload slots/);
  const leech = await startShoald({ name: 'leech', dir: path.join(dir, 'leech'), peer: b!, staticPeers: [a!], trustedKeys: rel.trusted });
  t.teardown(() => leech.kill('SIGKILL'));
  await waitForPeers([leech], 1);
  const s = await leech.client.waitFetch((await leech.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
  t.is(s.state, 'done');
  t.is(s.bytes.peer, rel.size, 'every byte from the seed, none from the origin');
  t.is(origin.bytes(rel.rel), rel.size);
  const seen = (await leech.client.peers()).find((p) => p.id === seed.peerId);
  t.true(seen?.healthy && !seen.banned, 'the busy holder was waited for, not banned');
});

test('long-poll waiters are bounded per address: past the share a have-map wait is told busy at once, and the holder keeps answering', async (t) => {
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 2 * MiB });
  const [a] = await peerAddresses(1);
  const seed = await startShoald({ name: 'seed', dir: path.join(dir, 'seed'), peer: a!, staticPeers: [], trustedKeys: rel.trusted });
  t.teardown(() => seed.kill('SIGKILL'));
  t.is((await seed.client.waitFetch((await seed.client.createFetch({ manifestUrl: rel.manifestUrl })).id)).state, 'done');
  const { seq } = (await (await fetch(`http://${seed.peer}/v1/have/${rel.sha256}`)).json()) as { seq: number };
  const ctl = new AbortController();
  t.teardown(() => ctl.abort());
  const statuses: number[] = [];
  const waits = Array.from({ length: 48 }, () => fetch(`http://${seed.peer}/v1/have/${rel.sha256}?wait=${seq}`, { signal: ctl.signal }).then((r) => { statuses.push(r.status); }, () => {}));
  await until(() => statuses.length >= 16, 'the waits past the share answered');
  t.true(statuses.every((s) => s === 503), `only busy answers so far: ${statuses.join(',')}`);
  t.is(statuses.length, 16, '32 waits held, 16 told busy');
  t.is((await fetch(`http://${seed.peer}/v1/have/${rel.sha256}`)).status, 200, 'a plain have-map still answers');
  ctl.abort();
  await Promise.all(waits);
});
