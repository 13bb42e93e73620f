/** `shoal site init` makes a working site; the daemon warns once about settings that bite later. */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { LocalOrigin } from '../agent-api/local-origin.js';
import { loadConfig, startupWarnings, DEFAULTS } from '../daemon/config/config.js';
import { peerAddresses, startShoald, waitForPeers } from './helpers/site.js';
import { runShoal, sha256File, tmpDir } from './helpers/fixtures.js';

const MiB = 1 << 20;

test('site init writes a key pair (0600), a secret (0600) and a config that loads; refuses overwrites and git work trees', async (t) => {
  const dir = await tmpDir(t);
  const out = path.join(dir, 'site');
  const r = await runShoal(['site', 'init', '--out', out, '--site-id', 'office-1', '--interfaces', 'eth0,eth1']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /sudo install -D -m 0600 .*site\.secret \/etc\/credstore\/shoal\.site-secret/);
  t.regex(r.stdout, /shoal publish .* --key .*publisher\/shoal\.key/);
  const mode = async (f: string) => (await fs.stat(path.join(out, f))).mode & 0o777;
  t.is(await mode('publisher/shoal.key'), 0o600);
  t.is(await mode('site.secret'), 0o600);
  t.is(await mode('config.json'), 0o644);
  const secret = (await fs.readFile(path.join(out, 'site.secret'), 'utf8')).trim();
  t.regex(secret, /^[A-Za-z0-9_-]{43}$/, '32 random bytes');
  const pub = (await fs.readFile(path.join(out, 'publisher/shoal.pub'), 'utf8')).split(' ')[0]!;
  const c = await loadConfig({ file: path.join(out, 'config.json'), env: { CREDENTIALS_DIRECTORY: out.replace(/site$/, 'creds') } });
  t.deepEqual(c.trustedKeys, [pub]);
  t.deepEqual(c.interfaces, ['eth0', 'eth1']);
  t.is(c.siteId, 'office-1');
  t.is(c.discovery, 'mdns');

  // A second init over it changes nothing; --force replaces everything.
  const again = await runShoal(['site', 'init', '--out', out]);
  t.is(again.code, 2);
  t.regex(again.stderr, /already exists \(use --force/);
  t.is((await fs.readFile(path.join(out, 'site.secret'), 'utf8')).trim(), secret);
  t.is((await runShoal(['site', 'init', '--out', out, '--force'])).code, 0);
  t.not((await fs.readFile(path.join(out, 'site.secret'), 'utf8')).trim(), secret);

  // Inside a git work tree: refused, nothing written; forced, written.
  const repo = path.join(dir, 'repo');
  await fs.mkdir(path.join(repo, '.git'), { recursive: true });
  const inRepo = await runShoal(['site', 'init', '--out', path.join(repo, 'deploy', 'site')]);
  t.is(inRepo.code, 2);
  t.regex(inRepo.stderr, /inside the git work tree/);
  t.false(await fs.stat(path.join(repo, 'deploy')).then(() => true, () => false));
  t.is((await runShoal(['site', 'init', '--out', path.join(repo, 'deploy', 'site'), '--force'])).code, 0);

  // Bad input is a usage error before any file exists.
  const bad = await runShoal(['site', 'init', '--out', path.join(dir, 'bad'), '--static-peers', 'nohost']);
  t.is(bad.code, 2);
  t.is(bad.stderr.trim(), 'shoal: error [usage]: staticPeers[0]: expected "host:port", got "nohost"');
  t.false(await fs.stat(path.join(dir, 'bad')).then(() => true, () => false));
  t.is((await runShoal(['site', 'init'])).code, 2);
});

test('two daemons on the config site init wrote, the secret passed as systemd credential: private links, a release signed with the new key fetched', async (t) => {
  const dir = await tmpDir(t);
  const out = path.join(dir, 'site');
  t.is((await runShoal(['site', 'init', '--out', out])).code, 0);
  const site = JSON.parse(await fs.readFile(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  // What LoadCredential= gives the service: a directory holding the credential, named by $CREDENTIALS_DIRECTORY.
  const creds = path.join(dir, 'credentials');
  await fs.mkdir(creds);
  await fs.copyFile(path.join(out, 'site.secret'), path.join(creds, 'shoal.site-secret'));

  // The publisher's side with the real CLI: a release on a local origin, signed with the site's key.
  const www = path.join(dir, 'www');
  await fs.mkdir(path.join(www, 'app', '1.0.0'), { recursive: true });
  await fs.writeFile(path.join(www, 'app', '1.0.0', 'app.bin'), randomBytes(6 * MiB));
  const origin = new LocalOrigin(www, { bytesPerSec: 16 * MiB });
  const url = await origin.start();
  t.teardown(() => origin.stop());
  const pub = await runShoal(['publish', path.join(www, 'app', '1.0.0', 'app.bin'), '--name', 'app', '--version', '1.0.0', '--sequence', '1',
    '--key', path.join(out, 'publisher', 'shoal.key'), '--base-url', `${url}/app/1.0.0/`, '-o', path.join(www, 'app', '1.0.0.json')]);
  t.is(pub.code, 0, pub.stderr);

  const addrs = await peerAddresses(2);
  const { peerListen: _p, adminListen: _a, aptListen: _ap, ociListen: _o, trustedKeys, ...rest } = site;
  const daemons = await Promise.all(addrs.map((peer, i) => startShoald({
    name: `d${i}`, dir: path.join(dir, `d${i}`), peer, staticPeers: addrs, trustedKeys: trustedKeys as string[],
    config: { ...rest, discovery: 'static' }, env: { CREDENTIALS_DIRECTORY: creds },
  })));
  t.teardown(async () => { for (const d of daemons) { await d.client.close(); await d.kill('SIGKILL'); } });
  await waitForPeers(daemons, 1);
  const status = await runShoal(['status', '--api', daemons[0]!.api]);
  t.regex(status.stdout, /links +private: TLS 1\.3/);
  t.regex(status.stdout, new RegExp(`site ${site.siteId as string}`));
  // Well configured (keys, a secret, loopback peers): no warning at start.
  for (const d of daemons) t.deepEqual(d.logs.filter((l) => l.includes('"warning"')), []);

  const results = await Promise.all(daemons.map((d, i) => runShoal(['fetch', `${url}/app/1.0.0.json`, '--api', d.api, '-o', path.join(dir, `out${i}.bin`)])));
  for (const r of results) t.is(r.code, 0, r.stderr);
  const want = await sha256File(path.join(www, 'app', '1.0.0', 'app.bin'));
  for (let i = 0; i < 2; i++) t.is(await sha256File(path.join(dir, `out${i}.bin`)), want);
  t.is(origin.bytes('app/1.0.0/app.bin'), 6 * MiB, 'the origin served the release once');
});

test('a daemon with no trusted keys, an open site on a LAN address and a wildcard listener says so at start, once each', async (t) => {
  const dir = await tmpDir(t);
  const d = await startShoald({ name: 'w', dir: path.join(dir, 'w'), peer: '0.0.0.0:0', staticPeers: [], trustedKeys: [] });
  t.teardown(async () => { await d.client.close(); await d.kill('SIGKILL'); });
  const warnings = d.logs.map((l) => JSON.parse(l) as { level: string; warning?: string; msg: string }).filter((j) => j.warning);
  t.deepEqual(warnings.map((w) => w.warning).sort(), ['all-interfaces', 'no-trusted-keys', 'open-site']);
  for (const w of warnings) t.is(w.level, 'warn');
  t.regex(warnings.find((w) => w.warning === 'open-site')!.msg, /^open site on 0\.0\.0\.0:0: peer links are plain HTTP/);

  // The rules one by one (pure): loopback peers need no secret; named interfaces quiet the wildcard warning.
  const base = { ...DEFAULTS, trustedKeys: ['ed25519:x'], siteSecret: ['s'.repeat(16)] };
  t.deepEqual(startupWarnings({ ...base, peerListen: { host: '0.0.0.0', port: 7400 }, interfaces: ['eth0'] }), []);
  t.deepEqual(startupWarnings({ ...base, peerListen: { host: '127.0.0.1', port: 7400 }, siteSecret: undefined }), []);
  t.deepEqual(startupWarnings({ ...base, peerListen: { host: '192.0.2.1', port: 7400 }, siteSecret: undefined }).map((w) => w.code), ['open-site']);
  t.deepEqual(startupWarnings({ ...base, peerListen: { host: '::', port: 7400 } }).map((w) => w.code), ['all-interfaces']);
});
