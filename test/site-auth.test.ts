/** Site isolation on one network: two sites with different secrets never use each other; bad or replayed HMACs get 401. */
import test from 'ava';
import path from 'node:path';
import { SiteAuth } from '../daemon/peers/site-auth.js';
import { originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald, waitForPeers } from './helpers/site.js';
import { tmpDir } from './helpers/fixtures.js';

const MiB = 1 << 20;
const SECRET_A = 'site-a-secret-0123456789';
const SECRET_B = 'site-b-secret-9876543210';

test('two sites with different secrets, all listing each other, never exchange a byte; each pulls the origin once', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 8 * MiB });
  const addrs = await peerAddresses(4);
  const daemons = await Promise.all(addrs.map((a, i) => startShoald({
    name: `s${i}`, dir: path.join(dir, `s${i}`), peer: a, staticPeers: addrs, trustedKeys: rel.trusted,
    config: { siteSecret: i < 2 ? SECRET_A : SECRET_B },
  })));
  t.teardown(() => Promise.all(daemons.map(async (d) => { await d.client.close(); await d.kill('SIGKILL'); })));
  await waitForPeers(daemons, 1);
  await new Promise((r) => setTimeout(r, 1500)); // several probe rounds: no cross-site peer may appear
  for (const [i, d] of daemons.entries()) {
    const peers = await d.client.peers();
    t.deepEqual(peers.map((p) => p.id), [daemons[i < 2 ? 1 - i : 5 - i]!.peerId], `${d.name} only knows its own site`);
  }
  const results = await Promise.all(daemons.map(async (d) => d.client.waitFetch((await d.client.createFetch({ manifestUrl: rel.manifestUrl })).id)));
  t.is(origin.bytes(rel.rel), 2 * rel.size, 'each site pulled the artifact from the origin once');
  for (const r of results) t.is(r.bytes.origin + r.bytes.peer, rel.size);
  t.is(results[0]!.bytes.peer + results[1]!.bytes.peer, rel.size, 'site A shared within itself');
  t.is(results[2]!.bytes.peer + results[3]!.bytes.peer, rel.size, 'site B shared within itself');

  // Raw requests: no header, a wrong secret, a replay → 401; a fresh valid one → 200.
  const url = (p: string) => `http://${daemons[0]!.peer}${p}`;
  t.is((await fetch(url('/v1/info'))).status, 401);
  t.is((await fetch(url('/v1/info'), { headers: new SiteAuth(SECRET_B, 'intruder0001').headers('GET', '/v1/info') })).status, 401);
  const good = new SiteAuth(SECRET_A, 'friendly0001').headers('GET', '/v1/info');
  t.is((await fetch(url('/v1/info'), { headers: good })).status, 200);
  const replay = await fetch(url('/v1/info'), { headers: good });
  t.is(replay.status, 401);
  t.regex(((await replay.json()) as { error: { message: string } }).error.message, /replayed/);
  const old = new SiteAuth(SECRET_A, 'friendly0001', () => Date.now() - 120_000).headers('GET', '/v1/info');
  t.is((await fetch(url('/v1/info'), { headers: old })).status, 401, 'outside the time window');
  const otherPath = new SiteAuth(SECRET_A, 'friendly0001').headers('GET', '/v1/info');
  t.is((await fetch(url(`/v1/have/${rel.sha256}`), { headers: otherPath })).status, 401, 'signature binds the path');
});
