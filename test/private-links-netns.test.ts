/**
 * Private links on the wire: two daemons in network namespaces exchange an
 * artifact with a known marker string inside, while tcpdump captures the peer
 * port on the bridge. With a site secret the marker never appears in the
 * capture; with an open site it does (so the test can see it when it is there).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { tmpDir } from './helpers/fixtures.js';
import { createTestbed, netnsSupport } from './helpers/netns.js';
import { originWithRelease } from './helpers/release.js';
import { startShoald } from './helpers/site.js';
import { until } from './helpers/until.js';
import { hasCommand } from './helpers/requires.js';

const MiB = 1 << 20;
const support = netnsSupport();
const noTcpdump = !hasCommand('tcpdump');
const why = !support.ok ? support.reason : noTcpdump ? 'tcpdump is not installed' : undefined;
const netnsTest = why ? test.serial.skip : test.serial;
if (why) console.log(`private link capture tests skipped: ${why}`);

const MARKER = 'SHOAL-PLAINTEXT-MARKER-7f3a9c';

async function exchange(t: import('ava').ExecutionContext, secret: string | undefined): Promise<{ capture: Buffer; peerBytes: number }> {
  const tb = createTestbed(2);
  t.teardown(() => tb.cleanup());
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 6 * MiB, host: tb.originIp, marker: MARKER });
  const peers = tb.hosts.map((h) => `${h.ip}:7400`);
  const daemons = await Promise.all(tb.hosts.map((h, i) => startShoald({
    name: `h${i}`, dir: path.join(dir, `h${i}`), peer: peers[i]!, staticPeers: peers, netns: h.ns, trustedKeys: rel.trusted,
    config: secret ? { siteSecret: secret } : {},
  })));
  t.teardown(() => Promise.all(daemons.map(async (d) => { await d.client.close(); await d.kill('SIGKILL'); })));
  await until(async () => (await Promise.all(daemons.map((d) => d.client.peers()))).every((p) => p.some((x) => x.healthy)), 'the two see each other', 10_000);
  // h0 gets the artifact from the origin; h1 then gets all of it from h0, captured on the way.
  await daemons[0]!.client.waitFetch((await daemons[0]!.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
  const pcap = path.join(dir, 'peer.pcap');
  const dump = spawn('tcpdump', ['-i', tb.bridge, '-U', '-B', '65536', '-s', '0', '-w', pcap, 'tcp port 7400'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((r) => dump.once('exit', r));
  t.teardown(() => { dump.kill('SIGKILL'); });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    dump.stderr!.on('data', (b: Buffer) => { err += b.toString(); if (err.includes('listening on')) resolve(); });
    void exited.then(() => reject(new Error(`tcpdump: ${err}`)));
  });
  const done = await daemons[1]!.client.waitFetch((await daemons[1]!.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
  await new Promise((r) => setTimeout(r, 300));
  dump.kill('SIGINT');
  await exited;
  return { capture: await fs.readFile(pcap), peerBytes: done.bytes.peer };
}

netnsTest('a private site: an artifact crossing between two members never shows its plaintext on the wire', async (t) => {
  const { capture, peerBytes } = await exchange(t, 'capture-test-site-secret-01');
  t.is(peerBytes, 6 * MiB, 'every byte came over the captured peer link');
  // Most of it, at least (a capture of a fast link can miss a few packets): a marker every 256 KiB would show.
  t.true(capture.length > 0.9 * 6 * MiB, `the capture holds the transfer (${capture.length} bytes)`);
  t.is(capture.indexOf(MARKER), -1, 'the marker is not in the capture');
  t.is(capture.indexOf('/v1/'), -1, 'nor any request path');
});

netnsTest('an open site: the same exchange shows the marker on the wire (the capture can see it)', async (t) => {
  const { capture, peerBytes } = await exchange(t, undefined);
  t.is(peerBytes, 6 * MiB);
  t.true(capture.indexOf(MARKER) >= 0, 'the marker is in the capture');
});
