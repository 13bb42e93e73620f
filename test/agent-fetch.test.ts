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
