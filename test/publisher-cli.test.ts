import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { runShoal, tmpDir } from './helpers/fixtures.js';

async function setup(t: ExecutionContext) {
  const dir = await tmpDir(t);
  const r = await runShoal(['keygen', '--out', path.join(dir, 'keys')]);
  t.is(r.code, 0, r.stderr);
  await fs.writeFile(path.join(dir, 'app.bin'), randomBytes((2 << 20) + 77));
  return { dir, key: path.join(dir, 'keys/shoal.key'), pub: path.join(dir, 'keys/shoal.pub') };
}

test('publish, channel set and verify through the CLI, with documented exit codes', async (t) => {
  const { dir, key, pub } = await setup(t);
  const m = path.join(dir, 'm.json');
  let r = await runShoal(['publish', path.join(dir, 'app.bin'), '--name', 'app', '--version', '1.0', '--sequence', '3', '--key', key, '--base-url', 'http://127.0.0.1:9/', '--chunk-size', '1MiB', '-o', m]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /app\.bin\s+2097229 bytes\s+3 chunks/);

  r = await runShoal(['verify', m, '--trust', pub, '--file', path.join(dir, 'app.bin')]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /app\.bin: ok/);

  r = await runShoal(['verify', m, '--trust', pub, '--json']);
  const j = JSON.parse(r.stdout);
  t.true(j.ok);
  t.is(j.signed.sequence, 3);

  // 7: the bytes differ (one byte in chunk 1).
  const bin = await fs.readFile(path.join(dir, 'app.bin'));
  bin[(1 << 20) + 5] ^= 1;
  await fs.writeFile(path.join(dir, 'tampered.bin'), bin);
  r = await runShoal(['verify', m, '--trust', pub, '--file', `app.bin=${path.join(dir, 'tampered.bin')}`]);
  t.is(r.code, 7);
  t.regex(r.stderr, /^shoal: error \[file-mismatch\]: .*chunk 1/m);

  // 6: rollback; 4: untrusted key; 3: invalid document; 2: usage; 8: bad key.
  t.is((await runShoal(['verify', m, '--trust', pub, '--last-sequence', '4'])).code, 6);
  const other = await runShoal(['keygen', '--out', path.join(dir, 'other')]);
  t.is(other.code, 0);
  r = await runShoal(['verify', m, '--trust', path.join(dir, 'other/shoal.pub'), '--json']);
  t.is(r.code, 4);
  t.is(JSON.parse(r.stdout).error.code, 'unknown-key');
  await fs.writeFile(path.join(dir, 'junk.json'), '{"signed":');
  t.is((await runShoal(['verify', path.join(dir, 'junk.json'), '--trust', pub])).code, 3);
  t.is((await runShoal(['verify', m])).code, 2);
  t.is((await runShoal(['publish', '--bogus'])).code, 2);
  t.is((await runShoal(['verify', m, '--trust', 'ed25519:nope'])).code, 8);
  t.is((await runShoal(['keygen', '--out', path.join(dir, 'keys')])).code, 8, 'refuses to overwrite a key');

  // Channel pointing at the manifest, and a k-of-n second signature with `shoal sign`.
  const ch = path.join(dir, 'stable.json');
  r = await runShoal(['channel', 'set', '--channel', 'stable', '--manifest', m, '--manifest-url', 'http://127.0.0.1:9/m.json', '--key', key, '-o', ch]);
  t.is(r.code, 0, r.stderr);
  r = await runShoal(['verify', ch, '--trust', pub, '--manifest', m]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /channel stable of app: sequence 3/);
  r = await runShoal(['sign', m, '--key', path.join(dir, 'other/shoal.key'), '-o', path.join(dir, 'm2.json')]);
  t.is(r.code, 0, r.stderr);
  r = await runShoal(['verify', path.join(dir, 'm2.json'), '--trust', pub, '--trust', path.join(dir, 'other/shoal.pub'), '--threshold', '2']);
  t.is(r.code, 0, r.stderr);
  t.is((await runShoal(['verify', m, '--trust', pub, '--trust', path.join(dir, 'other/shoal.pub'), '--threshold', '2'])).code, 4);
});

test('expired documents exit 5; --bundle and --tar publish tar bundles; --help works on every verb', async (t) => {
  const { dir, key, pub } = await setup(t);
  const m = path.join(dir, 'short.json');
  t.is((await runShoal(['publish', path.join(dir, 'app.bin'), '--name', 'app', '--version', '1', '--sequence', '1', '--key', key, '--base-url', 'http://127.0.0.1:9/', '--expires', '1s', '-o', m])).code, 0);
  await new Promise((r) => setTimeout(r, 1100));
  t.is((await runShoal(['verify', m, '--trust', pub])).code, 5);

  const b = path.join(dir, 'b.json');
  let r = await runShoal(['publish', path.join(dir, 'app.bin'), '--bundle', '--name', 'app', '--version', '2', '--sequence', '2', '--key', key, '--base-url', 'http://127.0.0.1:9/', '-o', b]);
  t.is(r.code, 0, r.stderr);
  const files = JSON.parse(await fs.readFile(b, 'utf8')).signed.files;
  t.deepEqual(files.map((f: { path: string; type: string }) => [f.path, f.type]), [['app-2.tar', 'tar']]);
  r = await runShoal(['publish', path.join(dir, 'app-2.tar'), '--tar', '--name', 'app', '--version', '3', '--sequence', '3', '--key', key, '--base-url', 'http://127.0.0.1:9/', '-o', path.join(dir, 't.json')]);
  t.is(r.code, 0, r.stderr);
  t.is((await runShoal(['verify', path.join(dir, 't.json'), '--trust', pub, '--file', path.join(dir, 'app-2.tar')])).code, 0);

  for (const verb of ['keygen', 'publish', 'sign', 'channel', 'verify']) {
    r = await runShoal([verb, '--help']);
    t.is(r.code, 0, verb);
    t.regex(r.stdout, new RegExp(`shoal ${verb}`));
  }
  r = await runShoal([]);
  t.is(r.code, 2);
  t.regex(r.stdout, /Exit codes/);
});
