/**
 * Secret rotation without a flag day, with real daemons on loopback: a member
 * holding [new, old] beside one holding [old] and one holding [new]; then the
 * old secret removed everywhere. (Run in the solo pass: it times handshakes
 * and probes, which a loaded machine stretches.)
 */
import test from 'ava';
import path from 'node:path';
import { originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald, type RunningDaemon } from './helpers/site.js';
import { tmpDir } from './helpers/fixtures.js';
import { until } from './helpers/until.js';

const MiB = 1 << 20;

/** A fetch that must finish within `ms`, else fails with the daemon's last log lines (never a hang). */
async function fetchWithin(d: RunningDaemon, manifestUrl: string, ms = 60_000) {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${d.name}: fetch not done in ${ms} ms:\n${d.logs.slice(-20).join('\n')}`)), ms); });
  try {
    return await Promise.race([d.client.waitFetch((await d.client.createFetch({ manifestUrl })).id), limit]);
  } finally {
    clearTimeout(timer);
  }
}

test('secret rotation: [new, old], [old] and [new] all get the artifact through the site; once the old secret is gone everywhere, [old] is out', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 12 * MiB });
  const [OLD, NEW] = ['rotation-old-secret-0001', 'rotation-new-secret-0002'];
  const addrs = await peerAddresses(3);
  const secrets = [[NEW, OLD], [OLD], [NEW]];
  const start = (i: number, s: string[]) => startShoald({ name: `r${i}`, dir: path.join(dir, `r${i}`), peer: addrs[i]!, staticPeers: addrs, trustedKeys: rel.trusted, config: { siteSecret: s } });
  const daemons: RunningDaemon[] = await Promise.all(secrets.map((s, i) => start(i, s)));
  t.teardown(() => Promise.all(daemons.map(async (d) => { await d.client.close(); await d.kill('SIGKILL'); })));
  const ids = (d: RunningDaemon) => d.client.peers().then((ps) => ps.filter((p) => p.healthy).map((p) => p.id).sort());
  // [old] reaches [new, old] (it speaks old, which the other accepts); [new] and [new, old] reach each other.
  await until(async () => (await ids(daemons[1]!)).includes(daemons[0]!.peerId) && (await ids(daemons[2]!)).includes(daemons[0]!.peerId), 'the rotating member reached', 10_000);
  t.false((await ids(daemons[1]!)).includes(daemons[2]!.peerId), '[old] and [new] share no secret');
  // The rotating member fetches first; then [old] and [new] get every byte from it over their own secret.
  const fetch = (d: RunningDaemon) => fetchWithin(d, rel.manifestUrl);
  t.is((await fetch(daemons[0]!)).state, 'done');
  const [old, neu] = await Promise.all([fetch(daemons[1]!), fetch(daemons[2]!)]);
  t.is(old.bytes.peer, rel.size, '[old] got it all from [new, old]');
  t.is(neu.bytes.peer, rel.size, '[new] got it all from [new, old]');
  t.is(origin.bytes(rel.rel), rel.size, 'the origin served it once');
  // The old secret removed everywhere: the member still holding only the old one is out.
  await daemons[0]!.client.close();
  await daemons[0]!.kill('SIGKILL');
  daemons[0] = await start(0, [NEW]);
  await until(async () => (await ids(daemons[2]!)).includes(daemons[0]!.peerId), '[new] and [new] again', 10_000);
  await until(async () => (await ids(daemons[1]!)).length === 0, '[old] is out', 15_000);
});
