/** Untrusted input with a clear code and one line: deep JSON, unknown flags, a directory for -o. */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { nestsDeeperThan } from '../manifests/canonical.js';
import { ShoalError } from '../manifests/errors.js';
import { verifyManifest } from '../manifests/verify.js';
import { keys, runShoal, tmpDir } from './helpers/fixtures.js';
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
