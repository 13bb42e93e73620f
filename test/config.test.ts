import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ShoalError } from '../daemon/errors.js';
import { DEFAULTS, loadConfig } from '../daemon/config/config.js';
import { tmpDir } from './helpers/fixtures.js';

test('defaults ← file ← env ← flags, with sizes, durations and lists parsed', async (t) => {
  const dir = await tmpDir(t);
  const file = path.join(dir, 'c.json');
  await fs.writeFile(file, JSON.stringify({ cacheDir: 'cache', cacheMaxBytes: '2GiB', staticPeers: ['198.18.0.2:7400', '[::1]:7400'], leaseTtlMs: '5s', siteId: 'office' }));
  const c = await loadConfig({ file, env: { SHOAL_SITE_ID: 'lab', SHOAL_CHUNK_CONCURRENCY: '4', SHOAL_SCRUB_CRON: '' }, flags: { siteId: 'cli' } });
  t.is(c.cacheDir, path.join(dir, 'cache'), 'relative to the file');
  t.is(c.cacheMaxBytes, 2 * 2 ** 30);
  t.deepEqual(c.staticPeers, [{ host: '198.18.0.2', port: 7400 }, { host: '::1', port: 7400 }]);
  t.is(c.leaseTtlMs, 5000);
  t.is(c.chunkConcurrency, 4);
  t.is(c.scrubCron, '', 'an empty scrub schedule turns the scrub off');
  t.is(DEFAULTS.scrubCron, '40 3 * * *');
  t.is(c.siteId, 'cli', 'flags win over env and file');
  t.deepEqual(c.peerListen, DEFAULTS.peerListen);
  t.is((await loadConfig({ env: { CACHE_DIRECTORY: '/var/cache/shoal-x' } })).cacheDir, '/var/cache/shoal-x');
});

test('bad config names the key, where it came from and why', async (t) => {
  const dir = await tmpDir(t);
  const file = path.join(dir, 'c.json');
  const bad = async (content: unknown, re: RegExp, src: Parameters<typeof loadConfig>[0] = {}) => {
    await fs.writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
    const e = await t.throwsAsync(loadConfig({ file, ...src }), { instanceOf: ShoalError });
    t.is(e?.code, 'bad-config');
    t.regex(e!.message, re);
  };
  await bad('{nope', /not JSON/);
  await bad('[1]', /JSON object/);
  await bad({ peerListen: 'localhost' }, /config file .*peerListen: expected "host:port"/);
  await bad({ peerListen: 'x:99999' }, /peerListen/);
  await bad({ cacheMaxBytes: 'lots' }, /cacheMaxBytes: expected a size/);
  await bad({ discovery: 'carrier-pigeon' }, /discovery: expected one of mdns, static/);
  await bad({ chunkConcurrency: 0 }, /chunkConcurrency: expected a whole number from 1 to 64/);
  await bad({ scrubCron: 'nightly' }, /scrubCron/);
  await bad({ cacheDirr: '/x' }, /unknown config key "cacheDirr"/);
  await bad({ siteId: '../x' }, /siteId/);
  await bad({ trustedKeys: ['ed25519:a'], threshold: 2 }, /threshold: 2 is more than the 1 trusted key/);
  await bad({}, /environment: config key leaseTtlMs/, { env: { SHOAL_LEASE_TTL_MS: 'soon' } });
  await t.throwsAsync(loadConfig({ file: path.join(dir, 'missing.json') }), { message: /config file .*missing\.json/ });
});

test('OCI keys: the mirror listener, ociResolve, registries as objects or host=url', async (t) => {
  const d = await loadConfig({ env: {} });
  t.deepEqual(d.ociListen, { host: '127.0.0.1', port: 7402 });
  t.false(d.ociResolve);
  t.true(d.ociRegistries.some((r) => r.host === 'docker.io' && r.url === 'https://registry-1.docker.io'));
  const c = await loadConfig({ env: { SHOAL_OCI_RESOLVE: 'true', SHOAL_OCI_REGISTRIES: 'docker.io=https://mirror.example/,198.18.0.5:5000=http://198.18.0.5:5000', SHOAL_OCI_LISTEN: 'off' } });
  t.true(c.ociResolve);
  t.is(c.ociListen, undefined);
  t.deepEqual(c.ociRegistries, [{ host: 'docker.io', url: 'https://mirror.example' }, { host: '198.18.0.5:5000', url: 'http://198.18.0.5:5000' }]);
  for (const [env, why] of [
    [{ SHOAL_OCI_RESOLVE: 'yes' }, /ociResolve: expected true or false/],
    [{ SHOAL_OCI_REGISTRIES: 'Docker.IO=https://x' }, /ociRegistries\[0\]\.host/],
    [{ SHOAL_OCI_REGISTRIES: 'a.io=ftp://x' }, /ociRegistries\[0\]\.url/],
    [{ SHOAL_OCI_REGISTRIES: 'a.io=https://x,a.io=https://y' }, /named twice/],
  ] as const) {
    const e = await t.throwsAsync(loadConfig({ env }), { instanceOf: ShoalError });
    t.regex(e!.message, why);
  }
});
