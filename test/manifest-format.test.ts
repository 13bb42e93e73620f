import test from 'ava';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { canonicalBytes, duplicateKey, sha256Hex } from '../manifests/canonical.js';
import { digestFile } from '../manifests/chunker.js';
import { ShoalError, type ErrorCode } from '../daemon/errors.js';
import { generateSigningKey, loadPublicKey, loadSigningKey, parsePublicKey, writeKeyPair } from '../manifests/keys.js';
import { publish } from '../manifests/publish.js';
import { serializeEnvelope, signEnvelope } from '../manifests/sign.js';
import { verifyChannel, verifyManifest } from '../manifests/verify.js';
import { channelBody, fileEntry, keys, manifestBody, signed, tmpDir } from './helpers/fixtures.js';

test('canonical JSON follows RFC 8785 (the spec example)', (t) => {
  const input = JSON.parse('{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}');
  t.is(canonicalBytes(input).toString(), '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}');
  t.is(canonicalBytes({ b: 1, a: { d: [], c: '' } }).toString(), '{"a":{"c":"","d":[]},"b":1}');
});

test('keygen writes a 0600 PEM private key and a one-line public key whose id is SHA-256 of the raw key', async (t) => {
  const dir = await tmpDir(t);
  const k = generateSigningKey();
  const { keyFile, pubFile } = await writeKeyPair(dir, k);
  t.is((await fs.stat(keyFile)).mode & 0o777, 0o600);
  t.regex(await fs.readFile(keyFile, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  const line = await fs.readFile(pubFile, 'utf8');
  t.regex(line, /^ed25519:[A-Za-z0-9_-]{43} shoal\n$/);
  const pub = await loadPublicKey(pubFile);
  t.is(pub.keyid, k.keyid);
  t.is(pub.keyid, sha256Hex(Buffer.from(line.slice(8, 51), 'base64url')));
  t.is((await loadSigningKey(keyFile)).keyid, k.keyid);
  await t.throwsAsync(writeKeyPair(dir, generateSigningKey()), { instanceOf: ShoalError, message: /already exists/ });
  t.throws(() => parsePublicKey('ed25519:short'), { instanceOf: ShoalError });
  t.throws(() => parsePublicKey('rsa:AAAA'), { instanceOf: ShoalError });
});

for (const parallelThreshold of [0, Infinity]) {
  test(`chunker matches a reference hash at every boundary (${parallelThreshold === 0 ? 'worker' : 'single thread'})`, async (t) => {
    const dir = await tmpDir(t);
    const MiB = 1 << 20;
    // Sizes around chunk (1 MiB) and slot (8 MiB) boundaries.
    for (const size of [0, 1, MiB - 1, MiB, MiB + 1, 8 * MiB - 1, 8 * MiB, 8 * MiB + 1, 17 * MiB + 12345]) {
      const data = randomBytes(size);
      const file = path.join(dir, `f${size}`);
      await fs.writeFile(file, data);
      const d = await digestFile(file, MiB, { parallelThreshold });
      const ref = fileEntry('x', data, MiB);
      t.deepEqual({ size: d.size, sha256: d.sha256, chunks: d.chunks }, { size, sha256: ref.sha256, chunks: ref.chunks }, `size ${size}`);
    }
    const big = path.join(dir, 'odd');
    const data = randomBytes(5 * MiB + 7);
    await fs.writeFile(big, data);
    t.deepEqual((await digestFile(big, 3 * MiB, { parallelThreshold })).chunks, fileEntry('x', data, 3 * MiB).chunks);
  });
}

test('publish → verify round-trips, with a directory, a bundle and k-of-n keys', async (t) => {
  const dir = await tmpDir(t);
  await fs.mkdir(path.join(dir, 'in/sub'), { recursive: true });
  await fs.writeFile(path.join(dir, 'in/a.bin'), randomBytes(3 << 20));
  await fs.writeFile(path.join(dir, 'in/sub/b.txt'), 'hello');
  const [k1, k2, k3] = keys(3);
  const res = await publish({ inputs: [path.join(dir, 'in')], name: 'app', version: '2.0', sequence: 3, keys: [k1!, k2!], baseUrl: 'http://127.0.0.1:8080/r/', expiresInMs: 3600e3, chunkSize: 1 << 20 });
  const text = serializeEnvelope(res.envelope);
  const v = verifyManifest(text, { keys: [k1!, k2!, k3!].map((k) => k.publicKey), threshold: 2 });
  t.is(v.id, res.id);
  t.deepEqual(v.body.files.map((f) => [f.path, f.size, f.urls[0]]), [
    ['a.bin', 3 << 20, 'http://127.0.0.1:8080/r/a.bin'],
    ['sub/b.txt', 5, 'http://127.0.0.1:8080/r/sub/b.txt'],
  ]);
  t.deepEqual(v.signedBy.sort(), [k1!.keyid, k2!.keyid].sort());
  t.throws(() => verifyManifest(text, { keys: [k1!.publicKey, k3!.publicKey], threshold: 2 }), { instanceOf: ShoalError, message: /1 trusted signature/ });

  const b = await publish({ inputs: [path.join(dir, 'in')], name: 'app', version: '2.1', sequence: 4, keys: [k1!], baseUrl: 'http://127.0.0.1:8080/', expiresInMs: 3600e3, bundle: true, bundleDir: dir });
  const f = b.envelope.signed.files;
  t.is(f.length, 1);
  t.is(f[0]!.type, 'tar');
  t.is(f[0]!.path, 'app-2.1.tar');
  t.is(f[0]!.sha256, sha256Hex(await fs.readFile(b.bundlePath!)));
});

test('publish refuses symlinks and unsafe names', async (t) => {
  const dir = await tmpDir(t);
  await fs.mkdir(path.join(dir, 'in'));
  await fs.symlink('/etc/passwd', path.join(dir, 'in/link'));
  await t.throwsAsync(publish({ inputs: [path.join(dir, 'in')], name: 'app', version: '1', sequence: 1, keys: keys(1), baseUrl: 'http://x/', expiresInMs: 1e6 }), { message: /links/ });
  await fs.writeFile(path.join(dir, 'f'), 'x');
  await t.throwsAsync(publish({ inputs: [path.join(dir, 'f')], name: '../app', version: '1', sequence: 1, keys: keys(1), baseUrl: 'http://x/', expiresInMs: 1e6 }), { message: /--name/ });
});

// ---- every rejection code, each with a real crafted document ----

const [K, OTHER, K2] = keys(3);
const trust = { keys: [K!.publicKey], threshold: 1 };

function rejects(t: import('ava').ExecutionContext, fn: () => unknown, code: ErrorCode, path?: string) {
  const e = t.throws(fn, { instanceOf: ShoalError }) as ShoalError | undefined;
  t.is(e?.code, code, e?.message);
  if (path) t.is(e?.path, path);
}

test('bad-signature: a signed field changed after signing', (t) => {
  const env = JSON.parse(signed(manifestBody(), [K!]));
  env.signed.version = '9.9.9';
  rejects(t, () => verifyManifest(JSON.stringify(env), trust), 'bad-signature', '$.signatures[0]');
  const env2 = JSON.parse(signed(manifestBody(), [K!]));
  env2.signatures[0].sig = Buffer.alloc(64, 7).toString('base64');
  rejects(t, () => verifyManifest(JSON.stringify(env2), trust), 'bad-signature');
});

test('unknown-key: signed only by a key that is not trusted', (t) => {
  rejects(t, () => verifyManifest(signed(manifestBody(), [OTHER!]), trust), 'unknown-key');
});

test('threshold-not-met: 1 of the 2 required trusted signatures; no signatures at all', (t) => {
  rejects(t, () => verifyManifest(signed(manifestBody(), [K!, OTHER!]), { keys: [K!.publicKey, K2!.publicKey], threshold: 2 }), 'threshold-not-met');
  const env = JSON.parse(signed(manifestBody(), [K!]));
  env.signatures = [];
  rejects(t, () => verifyManifest(JSON.stringify(env), trust), 'threshold-not-met');
});

test('duplicate-keyid: one key counted twice cannot meet a threshold of 2', (t) => {
  const env = JSON.parse(signed(manifestBody(), [K!]));
  env.signatures.push({ ...env.signatures[0] });
  rejects(t, () => verifyManifest(JSON.stringify(env), { keys: [K!.publicKey, K2!.publicKey], threshold: 2 }), 'duplicate-keyid');
});

test('expired: manifest and channel past their expiry', (t) => {
  const body = manifestBody({ created: '2020-01-01T00:00:00Z', expires: '2020-02-01T00:00:00Z' });
  rejects(t, () => verifyManifest(signed(body, [K!]), trust), 'expired', '$.signed.expires');
  const ch = channelBody('a'.repeat(64), { expires: '2021-01-01T00:00:00Z' });
  rejects(t, () => verifyChannel(signed(ch, [K!]), trust), 'expired');
});

test('rollback: a sequence below the last accepted one', (t) => {
  rejects(t, () => verifyManifest(signed(manifestBody({ sequence: 4 }), [K!]), { ...trust, lastSequence: 5 }), 'rollback', '$.signed.sequence');
  t.notThrows(() => verifyManifest(signed(manifestBody({ sequence: 5 }), [K!]), { ...trust, lastSequence: 5 }));
  rejects(t, () => verifyChannel(signed(channelBody('b'.repeat(64), { sequence: 1 }), [K!]), { ...trust, lastSequence: 2 }), 'rollback');
});

test('malformed: not JSON, missing fields, wrong types, unknown fields — with the JSON path', (t) => {
  rejects(t, () => verifyManifest('{"signed": ', trust), 'malformed', '$');
  const { files: _f, ...noFiles } = manifestBody();
  rejects(t, () => verifyManifest(signed(noFiles, [K!]), trust), 'malformed', '$.signed.files');
  const bad = manifestBody();
  (bad.files[0] as unknown as { size: string }).size = '12';
  rejects(t, () => verifyManifest(signed(bad, [K!]), trust), 'malformed', '$.signed.files[0].size');
  rejects(t, () => verifyManifest(signed({ ...manifestBody(), extra: 1 }, [K!]), trust), 'malformed', '$.signed.extra');
  const badHash = manifestBody();
  badHash.files[0]!.chunks[1] = 'XYZ';
  rejects(t, () => verifyManifest(signed(badHash, [K!]), trust), 'malformed', '$.signed.files[0].chunks[1]');
  rejects(t, () => verifyManifest(signed(manifestBody({ created: 'yesterday' }), [K!]), trust), 'malformed', '$.signed.created');
  rejects(t, () => verifyManifest(signed({ ...manifestBody(), files: [{ ...manifestBody().files[0]!, urls: ['file:///etc/passwd'] }] }, [K!]), trust), 'malformed', '$.signed.files[0].urls[0]');
});

test('too-large: document bytes and chunk count are capped', (t) => {
  const text = signed(manifestBody(), [K!]);
  rejects(t, () => verifyManifest(text, { ...trust, limits: { maxBytes: 100 } }), 'too-large');
  rejects(t, () => verifyManifest(text, { ...trust, limits: { maxChunks: 1 } }), 'too-large', '$.signed.files');
  rejects(t, () => verifyManifest(text, { ...trust, limits: { maxFiles: 0 } }), 'too-large', '$.signed.files');
});

test('unsupported-schema: another schema or version', (t) => {
  rejects(t, () => verifyManifest(signed({ ...manifestBody(), schema: 'shoal.manifest/v2' }, [K!]), trust), 'unsupported-schema', '$.signed.schema');
  rejects(t, () => verifyManifest(signed(channelBody('c'.repeat(64)), [K!]), trust), 'unsupported-schema');
});

test('inconsistent: size vs chunks, duplicate paths, traversal, expiry before creation', (t) => {
  const m = manifestBody();
  m.files[0]!.size += 1 << 20;
  rejects(t, () => verifyManifest(signed(m, [K!]), trust), 'inconsistent', '$.signed.files[0].chunks');
  const f = manifestBody().files[0]!;
  rejects(t, () => verifyManifest(signed(manifestBody({ files: [f, { ...f }] }), [K!]), trust), 'inconsistent', '$.signed.files[1].path');
  for (const p of ['../etc/passwd', '/etc/passwd', 'a/../../b', 'a\\b', 'a//b', './a', 'a\u0000b']) {
    rejects(t, () => verifyManifest(signed(manifestBody({ files: [{ ...f, path: p }] }), [K!]), trust), 'inconsistent', '$.signed.files[0].path');
  }
  rejects(t, () => verifyManifest(signed(manifestBody({ files: [{ ...f, path: 'a' }, { ...f, path: 'a/b' }] }), [K!]), trust), 'inconsistent');
  rejects(t, () => verifyManifest(signed(manifestBody({ created: '2030-01-01T00:00:00Z', expires: '2029-01-01T00:00:00Z' }), [K!]), { ...trust, now: new Date('2028-01-01') }), 'inconsistent');
});

test('a channel verifies and names the manifest id', (t) => {
  const body = manifestBody();
  const id = sha256Hex(canonicalBytes(body));
  const v = verifyChannel(serializeEnvelope(signEnvelope(channelBody(id), [K!])), trust);
  t.is(v.body.manifestId, id);
  t.is(verifyManifest(signed(body, [K!]), trust).id, id);
});

test('malformed: a key given twice in one object, anywhere in a signed document (a signature over one reading is no proof for another)', (t) => {
  const text = signed(manifestBody(), [K!]);
  // The same field twice: JSON.parse would keep the last one silently.
  const twiceVersion = text.replace('"version":', '"version":"6.6.6","version":');
  rejects(t, () => verifyManifest(twiceVersion, trust), 'malformed', '$.signed.version');
  const inFile = text.replace('"size":', '"size":1,"size":');
  rejects(t, () => verifyManifest(inFile, trust), 'malformed', '$.signed.files[].size');
  // An escaped spelling of the same key is the same key.
  rejects(t, () => verifyManifest(text.replace('"version":', '"vers\\u0069on":"6.6.6","version":'), trust), 'malformed', '$.signed.version');
  // Equal keys in different objects, and keys equal to string values, are fine.
  t.notThrows(() => verifyManifest(text, trust));
  t.is(duplicateKey('{"a":{"a":1},"b":[{"a":"a"},{"a":2}],"c":"a"}'), undefined);
  t.is(duplicateKey('{"a":{"x":1,"y":{"x":2},"x":3}}'), '$.a.x');
});
