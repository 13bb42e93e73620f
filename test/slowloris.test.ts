/**
 * A slowloris holding far more sockets than the holder has descriptors
 * (ulimit -n 1024) does not keep a fresh peer from fetching from it: one
 * address holds at most its share of sockets, and sockets that are not in a
 * request make room for ones that are.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT, tmpDir } from './helpers/fixtures.js';
import { originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald, waitForPeers } from './helpers/site.js';
import { until } from './helpers/until.js';

const MiB = 1 << 20;

test('a slowloris with 1,500 sockets against a holder under ulimit -n 1024 does not block a fresh peer', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 16 * MiB });
  const [a, b] = await peerAddresses(2);
  const seed = await startShoald({ name: 'seed', dir: path.join(dir, 'seed'), peer: a!, staticPeers: [], trustedKeys: rel.trusted, maxOpenFiles: 1024 });
  t.teardown(() => seed.kill('SIGKILL'));
  t.is((await seed.client.waitFetch((await seed.client.createFetch({ manifestUrl: rel.manifestUrl })).id)).state, 'done');
  const attacker = spawn('sh', ['-c', 'ulimit -n 4096 && exec "$@"', 'sh', process.execPath, path.join(ROOT, 'dist/test/helpers/slowloris.js'), seed.peerHost, String(seed.peerPort), '1500', '90'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { attacker.kill('SIGKILL'); });
  let last = { opened: 0, refused: 0 };
  attacker.stdout.on('data', (d: Buffer) => { for (const l of d.toString().split('\n')) if (l.startsWith('{')) last = JSON.parse(l) as typeof last; });
  // Every socket has been tried and the server has been turning the excess away for a while.
  await until(() => last.opened >= 1500 && last.refused >= 1000, 'the slowloris at full strength', 30_000);
  const leech = await startShoald({ name: 'leech', dir: path.join(dir, 'leech'), peer: b!, staticPeers: [a!], trustedKeys: rel.trusted });
  t.teardown(() => leech.kill('SIGKILL'));
  await waitForPeers([leech], 1);
  const s = await leech.client.waitFetch((await leech.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
  t.is(s.state, 'done');
  t.is(s.bytes.peer, rel.size, 'every byte from the seed under attack, none from the origin');
  t.is(origin.bytes(rel.rel), rel.size);
  t.log(`slowloris sockets opened ${last.opened}, closed by the holder ${last.refused}`);
  t.is(attacker.exitCode, null, 'the attack was still going');
  t.true(await fetch(`${seed.api}/healthz`).then((r) => r.ok), 'the holder is fine');
});
