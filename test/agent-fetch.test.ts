/** `shoal fetch --extract` through a real daemon: a good bundle unpacks, a hostile one changes nothing. */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import tar from 'tar-stream';
import { LocalOrigin } from '../agent-api/local-origin.js';
import { generateSigningKey } from '../manifests/keys.js';
import { publish } from '../manifests/publish.js';
import { serializeEnvelope } from '../manifests/sign.js';
import { startSite } from './helpers/site.js';
import { runShoal, tmpDir } from './helpers/fixtures.js';

test('fetch --extract unpacks a verified bundle; a signed but hostile bundle is refused and nothing is written', async (t) => {
  const dir = await tmpDir(t);
  const www = path.join(dir, 'www');
  await fs.mkdir(path.join(dir, 'release/bin'), { recursive: true });
  await fs.writeFile(path.join(dir, 'release/bin/app'), '#!/bin/sh\necho app\n', { mode: 0o755 });
  await fs.writeFile(path.join(dir, 'release/README'), 'hello\n');
  await fs.mkdir(www);
  const origin = new LocalOrigin(www);
  const url = await origin.start();
  t.teardown(() => origin.stop());
  const key = generateSigningKey();
  const good = await publish({ inputs: [path.join(dir, 'release')], name: 'app', version: '1', sequence: 1, keys: [key], baseUrl: `${url}/`, expiresInMs: 3600e3, bundle: true, bundleDir: www });
  await fs.writeFile(path.join(www, 'good.json'), serializeEnvelope(good.envelope));
  // A compromised publisher signs a bundle with a traversal entry: signatures alone must not make it safe.
  const pack = tar.pack();
  const parts: Buffer[] = [];
  pack.on('data', (b: unknown) => { parts.push(b as Buffer); });
  const ended = new Promise<void>((r) => pack.on('end', () => r()));
  pack.entry({ name: 'ok.txt' }, 'fine');
  pack.entry({ name: '../../escaped.txt' }, 'evil');
  pack.finalize();
  await ended;
  await fs.writeFile(path.join(www, 'evil.tar'), Buffer.concat(parts));
  const evil = await publish({ inputs: [path.join(www, 'evil.tar')], name: 'app', version: '2', sequence: 2, keys: [key], baseUrl: `${url}/`, expiresInMs: 3600e3, tar: true });
  await fs.writeFile(path.join(www, 'evil.json'), serializeEnvelope(evil.envelope));

  const { daemons } = await startSite(t, dir, 1, [key.publicKey.text]);
  const api = daemons[0]!.api;
  const dest = path.join(dir, 'installed');
  let r = await runShoal(['fetch', `${url}/good.json`, '--api', api, '--extract', dest]);
  t.is(r.code, 0, r.stderr);
  t.is(await fs.readFile(path.join(dest, 'README'), 'utf8'), 'hello\n');
  t.is((await fs.stat(path.join(dest, 'bin/app'))).mode & 0o777, 0o755);

  const before = (await fs.readdir(dir)).sort();
  r = await runShoal(['fetch', `${url}/evil.json`, '--api', api, '--extract', path.join(dir, 'evil-out')]);
  t.is(r.code, 11);
  t.regex(r.stderr, /unsafe bundle: .*climbs out/);
  t.deepEqual((await fs.readdir(dir)).sort(), before, 'no staging left, no target created');
  await t.throwsAsync(fs.stat(path.join(dir, '..', 'escaped.txt')));
  t.is((await runShoal(['fetch', `${url}/good.json`, '--api', api, '-o', 'x', '--extract', 'y'])).code, 2);
});

test('channels: the latest of a channel resolves; rollback, expired, mismatched and untrusted channels are refused', async (t) => {
  const dir = await tmpDir(t);
  const { originWithRelease } = await import('./helpers/release.js');
  const { signEnvelope } = await import('../manifests/sign.js');
  const { canonicalBytes, sha256Hex } = await import('../manifests/canonical.js');
  const { channelBody } = await import('./helpers/fixtures.js');
  const { url, rel } = await originWithRelease(t, dir, { size: 3 << 20 });
  const manifest = JSON.parse(await fs.readFile(rel.manifestPath, 'utf8'));
  const id = sha256Hex(canonicalBytes(manifest.signed));
  const www = path.dirname(rel.file);
  const channel = async (file: string, over: Record<string, unknown>, key = rel.key) =>
    fs.writeFile(path.join(www, file), serializeEnvelope(signEnvelope(channelBody(id, { manifestUrl: rel.manifestUrl, ...over }), [key])));
  await channel('stable-5.json', { sequence: 5 });
  await channel('stable-4.json', { sequence: 4 });
  await channel('expired.json', { sequence: 9, expires: '2020-01-01T00:00:00Z' });
  await channel('wrong.json', { sequence: 9, manifestId: 'a'.repeat(64) });
  await channel('untrusted.json', { sequence: 9 }, generateSigningKey());
  await channel('other-name.json', { sequence: 9, name: 'other' }); // a channel of "other" handing out app's manifest
  const { daemons } = await startSite(t, dir, 1, rel.trusted);
  const api = daemons[0]!.api;
  const out = path.join(dir, 'app.bin');
  let r = await runShoal(['fetch', `${url}/stable-5.json`, '--channel', '--api', api, '-o', out, '--json']);
  t.is(r.code, 0, r.stderr);
  t.is(JSON.parse(r.stdout).fetch.channel, 'stable');
  t.is((await fs.stat(out)).size, rel.size);
  for (const [file, code] of [['stable-4.json', 'rollback'], ['expired.json', 'expired'], ['wrong.json', 'inconsistent'], ['untrusted.json', 'unknown-key'], ['other-name.json', 'inconsistent']] as const) {
    r = await runShoal(['fetch', `${url}/${file}`, '--channel', '--api', api, '-o', path.join(dir, 'x'), '--json']);
    t.is(r.code, 11, file);
    t.is(JSON.parse(r.stdout).error.code, code, file);
  }
  // Two agents asking at once: two jobs, one download of each blob.
  const [a, b] = await Promise.all([daemons[0]!.client.createFetch({ channelUrl: `${url}/stable-5.json` }), daemons[0]!.client.createFetch({ manifestUrl: rel.manifestUrl })]);
  const [sa, sb] = await Promise.all([daemons[0]!.client.waitFetch(a.id), daemons[0]!.client.waitFetch(b.id)]);
  t.is(sa.state, 'done');
  t.is(sb.state, 'done');
});

test('two agents asking for the same artifact at once cause one download', async (t) => {
  const dir = await tmpDir(t);
  const { originWithRelease } = await import('./helpers/release.js');
  const { origin, rel } = await originWithRelease(t, dir, { size: 12 << 20, bytesPerSec: 8 << 20 });
  const { daemons } = await startSite(t, dir, 1, rel.trusted);
  const c = daemons[0]!.client;
  const [a, b] = await Promise.all([c.createFetch({ manifestUrl: rel.manifestUrl }), c.createFetch({ manifestUrl: rel.manifestUrl })]);
  t.not(a.id, b.id);
  const [sa, sb] = await Promise.all([c.waitFetch(a.id), c.waitFetch(b.id)]);
  t.is(sa.state, 'done');
  t.is(sb.state, 'done');
  t.is(origin.bytes(rel.rel), rel.size, 'the origin served the artifact once');
});
