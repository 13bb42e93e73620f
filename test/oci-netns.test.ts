/**
 * A site's container pulls, for real: 4 hosts in their own network
 * namespaces, each with its own shoald (found by mDNS) as its registry
 * mirror, all pulling one multi-layer image (one layer ≥ 64 MiB) with the real
 * skopeo at once from a real registry behind a shaped WAN link. Every pull
 * gets the image's digest and the registry sends it ≤ 1.02 × once.
 */
import test from 'ava';
import path from 'node:path';
import { sha256File, tmpDir } from './helpers/fixtures.js';
import { createTestbed, netnsSupport } from './helpers/netns.js';
import { OCI_TOOLS, buildImage, pulledBlob, pushImage, skopeoPull, startRegistry, writeRegistriesConf } from './helpers/oci.js';
import { startShoald } from './helpers/site.js';
import { until } from './helpers/until.js';
import { hasCommand } from './helpers/requires.js';

const MiB = 1 << 20;
const support = netnsSupport();
const missing = OCI_TOOLS.find((b) => !hasCommand(b));
const why = !support.ok ? support.reason : missing ? `${missing} is not installed` : undefined;
const netnsTest = why ? test.serial.skip : test.serial;
if (why) console.log(`OCI site tests skipped: ${why}`);

netnsTest('4 hosts pull one image through their own shoald at once: every digest matches, registry egress ≤ 1.02 × the image', async (t) => {
  const wan = 100e6;
  const tb = createTestbed(4, { wanBitsPerSec: wan });
  t.teardown(() => tb.cleanup());
  const dir = await tmpDir(t);
  const reg = await startRegistry(path.join(dir, 'registry'), { listen: tb.originIp, token: true });
  t.teardown(() => reg.stop());
  const img = await buildImage(path.join(dir, 'img'), 'v1', [66 * MiB, 12 * MiB, 3 * MiB, 200_000]);
  await pushImage(img, reg.host, 'fleet/app');
  const before = reg.egress();
  const daemons = await Promise.all(tb.hosts.map((h, i) => startShoald({
    name: `h${i}`, dir: path.join(dir, `h${i}`), peer: `${h.ip}:7400`, staticPeers: [], netns: h.ns, trustedKeys: [],
    config: { discovery: 'mdns', interfaces: ['eth0'], ociListen: '127.0.0.1:7402', ociRegistries: [{ host: reg.host, url: reg.url }] },
  })));
  t.teardown(() => Promise.all(daemons.map(async (d) => { await d.client.close(); await d.kill('SIGKILL'); })));
  await until(async () => (await Promise.all(daemons.map((d) => d.client.peers()))).every((p) => p.filter((x) => x.healthy).length === 3), 'discovery', 15_000);
  const conf = path.join(dir, 'registries.conf');
  await writeRegistriesConf(conf, reg.host, '127.0.0.1:7402');
  const t0 = performance.now();
  const pulls = await Promise.all(tb.hosts.map((h, i) => skopeoPull(`${reg.host}/fleet/app@${img.digest}`, path.join(dir, `out${i}`), conf, { netns: h.ns })));
  const secs = (performance.now() - t0) / 1000;
  for (const [i, p] of pulls.entries()) {
    t.is(p.digest, img.digest);
    const big = img.layers[0]!;
    t.is(`sha256:${await sha256File(pulledBlob(path.join(dir, `out${i}`), big.digest))}`, big.digest);
  }
  const egress = reg.egress() - before;
  const bound = (img.size * 8) / wan;
  t.log(`4 hosts pulled ${(img.size / MiB).toFixed(1)} MiB in ${secs.toFixed(1)} s (${(secs / bound).toFixed(2)} × size ÷ WAN); registry sent ${(egress / MiB).toFixed(2)} MiB = ${(egress / img.size).toFixed(3)} ×`);
  t.true(egress <= 1.02 * img.size, `registry sent ${egress} bytes for ${img.size}`);
});
