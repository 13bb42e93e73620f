/** Export/import for air-gapped sites: tampering changes nothing; an import is served like an origin fetch. */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald, startSite } from './helpers/site.js';
import { runShoal, sha256File, tmpDir } from './helpers/fixtures.js';

const MiB = 1 << 20;

function tamper(archive: Buffer, entryName: string, at: number, what: 'flip' = 'flip'): Buffer {
  const out = Buffer.from(archive);
  // The entry's header: the name at a 512-byte boundary (it also appears inside the index).
  let header = -1;
  for (let i = out.indexOf(Buffer.from(entryName)); i >= 0; i = out.indexOf(Buffer.from(entryName), i + 1)) if (i % 512 === 0) { header = i; break; }
  if (header < 0) throw new Error(`no entry ${entryName}`);
  if (what === 'flip') out[header + 512 + at] ^= 0x01;
  return out;
}

test('export → tampered imports change nothing → a good import is served to the site without the origin', async (t) => {
  const dir = await tmpDir(t);
  const { origin, rel } = await originWithRelease(t, dir, { size: 5 * MiB });
  const { daemons } = await startSite(t, path.join(dir, 'connected'), 1, rel.trusted);
  const connected = daemons[0]!;
  await connected.client.waitFetch((await connected.client.createFetch({ manifestUrl: rel.manifestUrl })).id);
  const archive = path.join(dir, 'site.tar');
  let r = await runShoal(['export', rel.manifestPath, '-o', archive, '--api', connected.api]);
  t.is(r.code, 0, r.stderr);
  t.is((await runShoal(['export', 'app/9.9.9', '-o', path.join(dir, 'x.tar'), '--api', connected.api])).code, 1);
  await origin.stop(); // the air gap: from here on there is no origin

  const [addrB, addrC] = await peerAddresses(2);
  const b = await startShoald({ name: 'b', dir: path.join(dir, 'b'), peer: addrB!, staticPeers: [addrC!], trustedKeys: rel.trusted });
  t.teardown(async () => { await b.client.close(); await b.kill('SIGKILL'); });
  const good = await fs.readFile(archive);
  const manifestEntry = (await fs.readFile(archive, 'latin1')).match(/manifests\/[0-9a-f]{64}\.json/)![0];
  const variants: Array<[string, Buffer, RegExp]> = [
    ['a flipped byte in the blob data', tamper(good, `blobs/${rel.sha256}`, 3 * MiB + 17), /SHA-256 differs/],
    ['a flipped byte in the signed manifest', tamper(good, manifestEntry, 200), /signature|malformed|JSON/],
    ['truncated', good.subarray(0, good.length - 2 * MiB), /refused archive/],
  ];
  for (const [name, bytes, re] of variants) {
    const f = path.join(dir, 'bad.tar');
    await fs.writeFile(f, bytes);
    r = await runShoal(['import', f, '--api', b.api]);
    t.not(r.code, 0, name);
    t.regex(r.stderr, re, name);
    t.deepEqual(await b.client.artifacts(), [], `${name}: no artifact recorded`);
    t.deepEqual((await fs.readdir(path.join(dir, 'b/cache/blobs'))).filter((n) => !n.startsWith('.')), [], `${name}: no blob left in the cache`);
  }

  r = await runShoal(['import', archive, '--api', b.api, '--json']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout).artifacts, [{ name: 'app', version: '1.0.0' }]);
  const out = path.join(dir, 'from-b.bin');
  // The manifest's origin URL is dead: B serves the file from its verified cache.
  r = await runShoal(['fetch', rel.manifestUrl, '--api', b.api, '-o', out]);
  t.not(r.code, 0, 'fetching by URL needs the origin for the manifest itself');
  const res = await fetch(`${b.api}/api/v1/artifacts/app/1.0.0/files/${rel.rel}`);
  t.is(res.status, 200);

  // C, a peer of B, gets the manifest handed over inline and everything else from B.
  const c = await startShoald({ name: 'c', dir: path.join(dir, 'c'), peer: addrC!, staticPeers: [addrB!], trustedKeys: rel.trusted });
  t.teardown(async () => { await c.client.close(); await c.kill('SIGKILL'); });
  const job = await c.client.createFetch({ manifest: JSON.parse(await fs.readFile(rel.manifestPath, 'utf8')) });
  const st = await c.client.waitFetch(job.id);
  t.is(st.bytes.origin, 0);
  t.is(st.bytes.peer, rel.size);
  const viaC = await fetch(`${c.api}/api/v1/artifacts/app/1.0.0/files/${rel.rel}`);
  await fs.writeFile(out, Buffer.from(await viaC.arrayBuffer()));
  t.is(await sha256File(out), rel.sha256);
});
