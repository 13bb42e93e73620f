/** A lease flood against a real daemon: memory stays bounded and the daemon keeps serving. */
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Pool } from 'undici';
import { Identity, PEER_HEADER } from '../daemon/peers/identity.js';
import { tmpDir } from './helpers/fixtures.js';
import { originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald } from './helpers/site.js';

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

test('20,000 signed lease requests for invented blobs leave the daemon\'s RSS bounded, and it still fetches', async (t) => {
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 4 << 20 });
  const [addr] = await peerAddresses(1);
  const d = await startShoald({ name: 'd', dir: path.join(dir, 'd'), peer: addr!, staticPeers: [], trustedKeys: rel.trusted, config: { logLevel: 'warn' } });
  t.teardown(() => d.kill('SIGKILL'));
  const before = rssMiB(d.proc.pid!);
  const pool = new Pool(`http://${addr}`, { connections: 16 });
  t.teardown(() => pool.close());
  const me = Identity.generate();
  let next = 0;
  let ok = 0;
  const worker = async () => {
    for (let i = next++; i < 20_000; i = next++) {
      const body = Buffer.from(JSON.stringify({ blob: i.toString(16).padStart(64, 'f'), peer: me.id, chunks: 1 << 20, want: Array.from({ length: 64 }, (_, k) => k), max: 64, done: Array.from({ length: 200 }, (_, k) => 5000 + k) }));
      const res = await pool.request({ path: '/v1/leases', method: 'POST', body, headers: { 'content-type': 'application/json', [PEER_HEADER]: me.requestHeader('POST', '/v1/leases', body) } });
      await res.body.text();
      if (res.statusCode === 200) ok++;
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  const after = rssMiB(d.proc.pid!);
  t.log(`RSS ${before.toFixed(0)} → ${after.toFixed(0)} MiB after ${ok} accepted lease requests`);
  t.is(ok, 20_000);
  t.true(after <= 150, `RSS ${after.toFixed(0)} MiB`);
  const s = await d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
  t.is(s.state, 'done');
});
