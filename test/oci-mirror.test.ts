/**
 * The OCI pull mirror with a real registry (docker-registry, behind the
 * distribution token flow) and the real skopeo, on loopback: daemons pull one
 * image at once through their own mirror, the registry sends it once; a moved
 * tag is seen at once; a lying peer is banned and the pull still succeeds;
 * with shoald stopped skopeo goes straight to the registry.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { CA_CHUNK_SIZE } from '../daemon/frontends/content.js';
import { FakePeer } from './helpers/fake-peer.js';
import { sha256File, tmpDir } from './helpers/fixtures.js';
import { OCI_TOOLS, buildImage, pulledBlob, pushImage, skopeoPull, startRegistry, writeRegistriesConf } from './helpers/oci.js';
import { parseMetrics, sum } from './helpers/prometheus.js';
import { requires, hasCommand } from './helpers/requires.js';
import { startShoald, startSite, waitForPeers } from './helpers/site.js';
import { until } from './helpers/until.js';

const MiB = 1 << 20;
const missing = OCI_TOOLS.find((b) => !hasCommand(b));
const ociTest = requires(missing ? `${missing} is not installed (apt-get install skopeo docker-registry openssl)` : undefined);

async function registry(t: import('ava').ExecutionContext, dir: string, token = true) {
  const reg = await startRegistry(path.join(dir, 'registry'), { listen: '127.0.0.1', token });
  t.teardown(() => reg.stop());
  return reg;
}

ociTest('four daemons pull one image at once through their own mirror: every digest matches, the registry sends it once (token flow)', async (t) => {
  const dir = await tmpDir(t);
  const reg = await registry(t, dir);
  const img = await buildImage(path.join(dir, 'img'), 'v1', [20 * MiB, 6 * MiB, 300_000]);
  await pushImage(img, reg.host, 'team/app');
  const before = reg.egress();
  const { daemons } = await startSite(t, dir, 4, [], { ociRegistries: [{ host: reg.host, url: reg.url }] });
  await waitForPeers(daemons, 3);
  const pulls = await Promise.all(daemons.map(async (d, i) => {
    const conf = path.join(dir, `registries-${i}.conf`);
    await writeRegistriesConf(conf, reg.host, `127.0.0.1:${d.ociPort}`);
    return skopeoPull(`${reg.host}/team/app@${img.digest}`, path.join(dir, `out${i}`), conf);
  }));
  for (const p of pulls) t.is(p.digest, img.digest);
  for (const [i] of daemons.entries()) {
    for (const l of img.layers) t.is(`sha256:${await sha256File(pulledBlob(path.join(dir, `out${i}`), l.digest))}`, l.digest);
  }
  const egress = reg.egress() - before;
  t.log(`registry egress ${(egress / MiB).toFixed(2)} MiB for an image of ${(img.size / MiB).toFixed(2)} MiB: ${(egress / img.size).toFixed(3)}×; ${reg.tokens()} tokens`);
  t.true(egress <= 1.02 * img.size, `registry sent ${egress} bytes for ${img.size}`);
  t.true(reg.tokens() >= 2, 'the daemons asked the token server');
  let fromPeers = 0;
  for (const d of daemons) {
    const m = parseMetrics(await (await fetch(`${d.api}/metrics`)).text());
    fromPeers += sum(m, 'shoal_download_bytes_total', { kind: 'oci', source: 'peer' });
    t.true(sum(m, 'shoal_download_bytes_total', { kind: 'oci' }) + sum(m, 'shoal_local_bytes_total', { kind: 'oci' }) >= img.size - 1024, d.name);
  }
  t.true(fromPeers >= 2 * img.size, `peers supplied ${fromPeers} bytes`);
});

ociTest('the mirror speaks the pull protocol: /v2/, Range, HEAD, media types, ns=, OCI errors, pull only', async (t) => {
  const dir = await tmpDir(t);
  const reg = await registry(t, dir, false);
  const img = await buildImage(path.join(dir, 'img'), 'v1', [3 * MiB]);
  await pushImage(img, reg.host, 'app');
  const d = await startShoald({ name: 'd0', dir: path.join(dir, 'd0'), peer: '127.0.0.1:0', staticPeers: [], trustedKeys: [], config: { ociRegistries: [{ host: reg.host, url: reg.url }] } });
  t.teardown(() => d.kill('SIGKILL'));
  const base = `http://127.0.0.1:${d.ociPort}`;
  const v2 = await fetch(`${base}/v2/`);
  t.is(v2.status, 200);
  t.is(v2.headers.get('docker-distribution-api-version'), 'registry/2.0');
  const comp = reg.host.replace(':', '-');
  // containerd's form (?ns=) and the path form name the same registry.
  const m1 = await fetch(`${base}/v2/app/manifests/${img.digest}?ns=${reg.host}`);
  t.is(m1.status, 200);
  t.is(m1.headers.get('content-type'), 'application/vnd.oci.image.manifest.v1+json');
  t.is(m1.headers.get('docker-content-digest'), img.digest);
  const manifest = Buffer.from(await m1.arrayBuffer());
  const m2 = await fetch(`${base}/v2/${comp}/app/manifests/${img.digest}`, { method: 'HEAD' });
  t.is(m2.status, 200);
  t.is(Number(m2.headers.get('content-length')), manifest.length);
  const layer = img.layers[0]!;
  // HEAD of a blob not cached: the registry's answer, nothing fetched.
  const h = await fetch(`${base}/v2/${comp}/app/blobs/${layer.digest}`, { method: 'HEAD' });
  t.is(h.status, 200);
  t.is(Number(h.headers.get('content-length')), layer.size);
  t.is(h.headers.get('docker-content-digest'), layer.digest);
  t.is(d.client && parseMetrics(await (await fetch(`${d.api}/metrics`)).text()).filter((s) => s.name === 'shoal_download_bytes_total' && s.labels.kind === 'oci').reduce((a, s) => a + s.value, 0), manifest.length);
  const r = await fetch(`${base}/v2/${comp}/app/blobs/${layer.digest}`, { headers: { range: 'bytes=1000-1999' } });
  t.is(r.status, 206);
  t.is(r.headers.get('content-range'), `bytes 1000-1999/${layer.size}`);
  const want = (await fs.readFile(path.join(img.layout, 'blobs/sha256', layer.digest.slice(7)))).subarray(1000, 2000);
  t.true(Buffer.from(await r.arrayBuffer()).equals(want));
  // Refusals, each with an OCI error body.
  const errCode = async (res: Response) => ((await res.json()) as { errors: Array<{ code: string }> }).errors[0]!.code;
  const post = await fetch(`${base}/v2/${comp}/app/blobs/uploads/`, { method: 'POST' });
  t.is(post.status, 405);
  t.is(await errCode(post), 'UNSUPPORTED');
  const unknown = await fetch(`${base}/v2/app/manifests/${img.digest}?ns=elsewhere.example`);
  t.is(unknown.status, 404);
  t.is(await errCode(unknown), 'NAME_UNKNOWN');
  const badName = await fetch(`${base}/v2/App..x/manifests/latest`);
  t.is(badName.status, 400);
  t.is(await errCode(badName), 'NAME_INVALID');
  const missingBlob = await fetch(`${base}/v2/${comp}/app/blobs/sha256:${'0'.repeat(64)}`);
  t.is(missingBlob.status, 404);
  t.is(await errCode(missingBlob), 'BLOB_UNKNOWN');
  // Tags are not answered with ociResolve off: a quick 404, and skopeo gets the image from the registry itself.
  const t0 = performance.now();
  const tag = await fetch(`${base}/v2/${comp}/app/manifests/v1`);
  t.is(tag.status, 404);
  t.is(await errCode(tag), 'MANIFEST_UNKNOWN');
  t.true(performance.now() - t0 < 500);
  const conf = path.join(dir, 'registries.conf');
  await writeRegistriesConf(conf, reg.host, `127.0.0.1:${d.ociPort}`);
  t.is((await skopeoPull(`${reg.host}/app:v1`, path.join(dir, 'out'), conf)).digest, img.digest);
});

ociTest('a tag moved to a new image between two pulls: the second pull gets the new image (tags resolved upstream, never from a peer)', async (t) => {
  const dir = await tmpDir(t);
  const reg = await registry(t, dir);
  const a = await buildImage(path.join(dir, 'a'), 'stable', [2 * MiB]);
  const b = await buildImage(path.join(dir, 'b'), 'stable', [2 * MiB, 100_000]);
  await pushImage(a, reg.host, 'app');
  const { daemons } = await startSite(t, dir, 2, [], { ociRegistries: [{ host: reg.host, url: reg.url }], ociResolve: true });
  await waitForPeers(daemons, 1);
  const conf = (i: number) => path.join(dir, `registries-${i}.conf`);
  for (const [i, d] of daemons.entries()) await writeRegistriesConf(conf(i), reg.host, `127.0.0.1:${d.ociPort}`);
  for (const i of [0, 1]) t.is((await skopeoPull(`${reg.host}/app:stable`, path.join(dir, `out-a${i}`), conf(i))).digest, a.digest);
  await pushImage(b, reg.host, 'app');
  for (const i of [1, 0]) t.is((await skopeoPull(`${reg.host}/app:stable`, path.join(dir, `out-b${i}`), conf(i))).digest, b.digest);
  const m = parseMetrics(await (await fetch(`${daemons[0]!.api}/metrics`)).text());
  t.true(sum(m, 'shoal_unshared_bytes_total', { kind: 'oci' }) > 0, 'tag manifests came from the registry');
});

ociTest('a peer serving a corrupted layer: the pull still succeeds with the right digest, the peer is banned', async (t) => {
  const dir = await tmpDir(t);
  const reg = await registry(t, dir);
  const img = await buildImage(path.join(dir, 'img'), 'v1', [10 * MiB]);
  await pushImage(img, reg.host, 'app');
  const layer = img.layers[0]!;
  const liar = new FakePeer('corrupt', { sha256: layer.digest.slice(7), size: layer.size, chunkSize: CA_CHUNK_SIZE, file: path.join(img.layout, 'blobs/sha256', layer.digest.slice(7)) });
  const port = await liar.start();
  t.teardown(() => liar.stop());
  const d = await startShoald({ name: 'd0', dir: path.join(dir, 'd0'), peer: '127.0.0.1:0', staticPeers: [`127.0.0.1:${port}`], trustedKeys: [], config: { ociRegistries: [{ host: reg.host, url: reg.url }] } });
  t.teardown(() => d.kill('SIGKILL'));
  await until(async () => (await d.client.peers()).some((p) => p.healthy), 'the liar admitted', 10_000);
  const conf = path.join(dir, 'registries.conf');
  await writeRegistriesConf(conf, reg.host, `127.0.0.1:${d.ociPort}`);
  const p = await skopeoPull(`${reg.host}/app@${img.digest}`, path.join(dir, 'out'), conf);
  t.is(p.digest, img.digest);
  t.is(`sha256:${await sha256File(pulledBlob(path.join(dir, 'out'), layer.digest))}`, layer.digest);
  t.true(liar.served > 0, 'the liar was asked');
  const peers = await d.client.peers();
  t.true(peers.some((x) => x.banned && /differ from the origin/.test(x.banReason ?? '')), JSON.stringify(peers));
  const m = parseMetrics(await (await fetch(`${d.api}/metrics`)).text());
  t.true(sum(m, 'shoal_download_bytes_total', { kind: 'oci' }) > 0, 'the pull went through the mirror');
});

ociTest('shoald stopped: skopeo falls back to the registry at once (extra time under 1 s)', async (t) => {
  const dir = await tmpDir(t);
  const reg = await registry(t, dir);
  const img = await buildImage(path.join(dir, 'img'), 'v1', [4 * MiB, 50_000]);
  await pushImage(img, reg.host, 'app');
  const d = await startShoald({ name: 'd0', dir: path.join(dir, 'd0'), peer: '127.0.0.1:0', staticPeers: [], trustedKeys: [], config: { ociRegistries: [{ host: reg.host, url: reg.url }] } });
  const port = d.ociPort;
  await d.kill('SIGTERM');
  const direct = path.join(dir, 'direct.conf');
  const viaDead = path.join(dir, 'dead.conf');
  await writeRegistriesConf(direct, reg.host);
  await writeRegistriesConf(viaDead, reg.host, `127.0.0.1:${port}`);
  const times = { direct: [] as number[], fallback: [] as number[] };
  for (let i = 0; i < 3; i++) {
    const a = await skopeoPull(`${reg.host}/app:v1`, path.join(dir, 'o1'), direct);
    const b = await skopeoPull(`${reg.host}/app:v1`, path.join(dir, 'o2'), viaDead);
    t.is(a.digest, img.digest);
    t.is(b.digest, img.digest);
    times.direct.push(a.ms);
    times.fallback.push(b.ms);
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[1]!;
  const extra = med(times.fallback) - med(times.direct);
  t.log(`direct ${med(times.direct).toFixed(0)} ms, through a stopped shoald ${med(times.fallback).toFixed(0)} ms: ${extra.toFixed(0)} ms extra`);
  t.true(extra < 1000, `${extra} ms extra`);
});
