/** Untrusted input with a clear code and one line: deep JSON, unknown flags, a directory for -o. */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { nestsDeeperThan } from '../manifests/canonical.js';
import { ShoalError } from '../manifests/errors.js';
import { verifyManifest } from '../manifests/verify.js';
import { CLI, keys, runShoal, tmpDir } from './helpers/fixtures.js';
import { requires } from './helpers/requires.js';
import { until } from './helpers/until.js';
import { originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald } from './helpers/site.js';

test('nesting is measured before parsing, strings and escapes included', (t) => {
  t.false(nestsDeeperThan('{"a":[1,{"b":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}', 3));
  t.true(nestsDeeperThan('[[[[1]]]]', 3));
  t.false(nestsDeeperThan('["\\\\", "\\"[[[[[["]', 1));
  t.true(nestsDeeperThan('['.repeat(1_000_000), 32));
});

test('a manifest nested a million levels deep is malformed, not an internal error, in the verifier and through the agent API', async (t) => {
  const deep = `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`;
  const e = t.throws(() => verifyManifest(Buffer.from(deep), { keys: keys(1).map((k) => k.publicKey), threshold: 1, limits: { maxBytes: 4 << 20 } }));
  t.true(e instanceof ShoalError && e.code === 'malformed', String(e));
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 1 << 20 });
  const [addr] = await peerAddresses(1);
  const d = await startShoald({ name: 'd', dir: path.join(dir, 'd'), peer: addr!, staticPeers: [], trustedKeys: rel.trusted });
  t.teardown(() => d.kill('SIGKILL'));
  const res = await fetch(`${d.api}/api/v1/fetches`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"manifest":${'{"a":'.repeat(500_000)}1${'}'.repeat(500_000)}}` });
  t.is(res.status, 400);
  t.is(((await res.json()) as { error: { code: string } }).error.code, 'malformed');
  t.is((await fetch(`${d.api}/healthz`)).status, 200, 'and the daemon is fine');
});

test('an unknown flag and -o naming a directory are usage errors in one line, before anything is fetched', async (t) => {
  const dir = await tmpDir(t);
  let r = await runShoal(['fetch', 'http://127.0.0.1:1/x.json', '--nope', '-o', path.join(dir, 'f')]);
  t.is(r.code, 2);
  t.is(r.stderr.trim(), 'shoal: error [usage]: unknown option --nope (see --help)');
  await fs.mkdir(path.join(dir, 'adir'));
  // The API address is unreachable: a usage error found first proves nothing was asked of the daemon.
  r = await runShoal(['fetch', 'http://127.0.0.1:1/x.json', '--api', 'http://127.0.0.1:1', '-o', path.join(dir, 'adir')]);
  t.is(r.code, 2);
  t.regex(r.stderr.trim(), /^shoal: error \[usage\]: -o .*adir is a directory: name the file to write$/);
});

test('publish --base-url that is not a URL is one usage line', async (t) => {
  const dir = await tmpDir(t);
  await fs.writeFile(path.join(dir, 'f.bin'), 'x');
  t.is((await runShoal(['keygen', '--out', dir])).code, 0);
  const r = await runShoal(['publish', path.join(dir, 'f.bin'), '--name', 'app', '--version', '1.0.0', '--sequence', '1', '--key', path.join(dir, 'shoal.key'), '--base-url', 'notaurl', '-o', path.join(dir, 'm.json')]);
  t.is(r.code, 2);
  t.is(r.stderr.trim(), 'shoal: error [usage]: --base-url: not an http(s) URL: notaurl');
});

test('a cacheDir that is a file, or under one, is one bad-config line naming the key', async (t) => {
  const dir = await tmpDir(t);
  const file = path.join(dir, 'plain');
  await fs.writeFile(file, '');
  for (const where of [file, path.join(file, 'sub')]) {
    const r = await runShoal(['daemon', '--cache-dir', where, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--apt-listen', '127.0.0.1:0', '--oci-listen', '127.0.0.1:0']);
    t.is(r.code, 1);
    t.is(r.stderr.trim(), `shoal: error [bad-config]: cacheDir ${where}: not a directory`);
  }
});

requires(process.getuid?.() === 0 ? undefined : 'a read-only bind mount needs root', { serial: true })('a read-only cacheDir is one bad-config line, found at start-up', async (t) => {
  const dir = await tmpDir(t);
  const ro = path.join(dir, 'ro');
  await fs.mkdir(ro);
  execFileSync('mount', ['--bind', ro, ro]);
  t.teardown(() => { execFileSync('umount', [ro]); });
  execFileSync('mount', ['-o', 'remount,ro,bind', ro]);
  const r = await runShoal(['daemon', '--cache-dir', ro, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--apt-listen', '127.0.0.1:0', '--oci-listen', '127.0.0.1:0']);
  t.is(r.code, 1);
  t.is(r.stderr.trim(), `shoal: error [bad-config]: cacheDir ${ro}: read-only file system`);
  // A writable cacheDir with a read-only stateDir names stateDir.
  const r2 = await runShoal(['daemon', '--cache-dir', path.join(dir, 'c'), '--state-dir', ro, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--apt-listen', '127.0.0.1:0', '--oci-listen', '127.0.0.1:0']);
  t.is(r2.code, 1);
  t.is(r2.stderr.trim(), `shoal: error [bad-config]: stateDir ${ro}: read-only file system`);
});

test('shoal fetch prints its id; shoal fetch --cancel ID ends it, and the waiting fetch exits 11 with one line', async (t) => {
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 8 * 1024 * 1024, bytesPerSec: 512 * 1024 });
  const [addr] = await peerAddresses(1);
  const d = await startShoald({ name: 'c', dir: path.join(dir, 'c'), peer: addr!, staticPeers: [], trustedKeys: rel.trusted });
  t.teardown(async () => { await d.client.close(); await d.kill('SIGKILL'); });
  const proc = spawn(process.execPath, [CLI, 'fetch', rel.manifestUrl, '--api', d.api, '-o', path.join(dir, 'out.bin')]);
  let stderr = '';
  proc.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  const exited = new Promise<number | null>((r) => proc.on('exit', r));
  await until(() => /^fetch [0-9a-f]{16}$/m.test(stderr), 'the fetch id on stderr');
  const id = /^fetch ([0-9a-f]{16})$/m.exec(stderr)![1]!;
  const c = await runShoal(['fetch', '--cancel', id, '--api', d.api]);
  t.is(c.code, 0, c.stderr);
  t.regex(c.stdout.trim(), new RegExp(`^fetch ${id} \\(app 1\\.0\\.0\\): (cancelled|running)$`));
  t.is(await exited, 11);
  t.regex(stderr.trim().split('\n').pop()!, /^shoal: error \[aborted\]: cancelled by request$/);
  t.is((await d.client.getFetch(id)).state, 'cancelled');
  t.is((await runShoal(['fetch', '--cancel', 'nope', '--api', d.api])).code, 2);
  const unknown = await runShoal(['fetch', '--cancel', '0123456789abcdef', '--api', d.api]);
  t.is(unknown.stderr.trim(), 'shoal: error [not-found]: no fetch 0123456789abcdef');
});
