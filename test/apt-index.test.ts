/**
 * apt's trust chain as shoal reads it, against a real signed repository:
 * Release signatures checked by gpgv, index hashes from the Release, .deb
 * hashes from a Packages index read as a stream (plain, .gz, .xz).
 */
import test from 'ava';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { DebIndex } from '../daemon/apt/deb-index.js';
import { decompressed, readPackages } from '../daemon/apt/packages.js';
import { parseRelease, verifyRelease } from '../daemon/apt/release.js';
import { ShoalError } from '../daemon/errors.js';
import { APT_TOOLS, makeAptRepo } from './helpers/apt-repo.js';
import { sha256File, tmpDir } from './helpers/fixtures.js';
import { requires, hasCommand } from './helpers/requires.js';

const missing = APT_TOOLS.find((b) => !hasCommand(b));
const aptTest = requires(missing ? `${missing} is not installed (apt-get install apt-utils gpg gpgv xz-utils dpkg)` : undefined);

aptTest('a signed Release verifies with the binary or the armoured keyring, clearsigned or detached, and lists every index with its hash', async (t) => {
  const dir = await tmpDir(t);
  const repo = await makeAptRepo(path.join(dir, 'repo'), [{ name: 'alpha', bytes: 200_000 }, { name: 'beta', bytes: 50_000 }]);
  const dist = path.join(repo.root, 'dists/stable');
  const inRelease = await fs.readFile(path.join(dist, 'InRelease'));
  for (const ring of [repo.keyring, repo.keyringAsc]) {
    const r = await verifyRelease({ inRelease }, [ring]);
    t.is(r.signedBy, repo.fingerprint);
    t.true(r.byHash);
    const idx = r.files.get('main/binary-amd64/Packages.xz');
    t.truthy(idx);
    t.is(idx!.sha256, await sha256File(path.join(dist, 'main/binary-amd64/Packages.xz')));
    t.is(idx!.size, (await fs.stat(path.join(dist, 'main/binary-amd64/Packages.xz'))).size);
  }
  const detached = await verifyRelease({ release: await fs.readFile(path.join(dist, 'Release')), signature: await fs.readFile(path.join(dist, 'Release.gpg')) }, [repo.keyring]);
  t.is(detached.files.size, (await verifyRelease({ inRelease }, [repo.keyring])).files.size);
});

aptTest('a changed Release, a signature by another key, or text outside the signature never verifies', async (t) => {
  const dir = await tmpDir(t);
  const repo = await makeAptRepo(path.join(dir, 'repo'), [{ name: 'alpha', bytes: 10_000 }]);
  const other = await makeAptRepo(path.join(dir, 'other'), [{ name: 'gamma', bytes: 10_000 }]);
  const inRelease = await fs.readFile(path.join(repo.root, 'dists/stable/InRelease'), 'latin1');
  // One hash changed inside the signed text.
  const forged = inRelease.replace(/^( [0-9a-f])([0-9a-f]{63} +\d+ main\/binary-amd64\/Packages)$/m, (_m, a: string, b: string) => ` ${a.trim() === 'f' ? 'e' : 'f'}${b}`);
  t.not(forged, inRelease);
  const e1 = await t.throwsAsync(verifyRelease({ inRelease: Buffer.from(forged, 'latin1') }, [repo.keyring]));
  t.is((e1 as ShoalError).code, 'bad-signature');
  const e2 = await t.throwsAsync(verifyRelease({ inRelease: Buffer.from(inRelease, 'latin1') }, [other.keyring]));
  t.is((e2 as ShoalError).code, 'unknown-key');
  // Lines added after the signature are not part of what verifies: the signed text is what is read.
  const appended = `${inRelease}\nSHA256:\n ${'0'.repeat(64)} 1 main/evil\n`;
  const r = await verifyRelease({ inRelease: Buffer.from(appended, 'latin1') }, [repo.keyring]).catch((e: ShoalError) => e);
  if (r instanceof ShoalError) t.is(r.code, 'bad-signature');
  else t.false(r.files.has('main/evil'), 'text outside the signature is never read');
  const e3 = await t.throwsAsync(verifyRelease({ release: await fs.readFile(path.join(repo.root, 'dists/stable/Release')), signature: await fs.readFile(path.join(other.root, 'dists/stable/Release.gpg')) }, [repo.keyring, other.keyring]));
  t.is((e3 as ShoalError).code, 'bad-signature', 'a valid signature over another text');
  await t.throwsAsync(verifyRelease({ inRelease: Buffer.from(inRelease, 'latin1') }, []), { message: /no keyring/ });
});

aptTest('Packages read as a stream (plain, .gz, .xz) give every .deb\'s path, size and SHA-256, exactly', async (t) => {
  const dir = await tmpDir(t);
  const repo = await makeAptRepo(path.join(dir, 'repo'), [{ name: 'alpha', bytes: 300_000 }, { name: 'beta', version: '2.1-3', bytes: 1000 }, { name: 'gamma', bytes: 5000 }]);
  const bin = path.join(repo.root, 'dists/stable/main/binary-amd64');
  for (const name of ['Packages', 'Packages.gz', 'Packages.xz']) {
    const entries = [];
    for await (const e of readPackages(decompressed(name, createReadStream(path.join(bin, name))))) entries.push(e);
    t.deepEqual(entries.map((e) => e.package).sort(), ['alpha', 'beta', 'gamma'], name);
    for (const e of entries) {
      const deb = repo.debs.find((d) => d.name === e.package)!;
      t.is(e.filename, deb.filename);
      t.is(e.size, deb.size);
      t.is(e.sha256, await sha256File(path.join(repo.root, e.filename)));
    }
    t.is(entries.find((e) => e.package === 'beta')!.version, '2.1-3');
    const ix = await DebIndex.from(decompressed(name, createReadStream(path.join(bin, name))));
    t.is(ix.size, 3);
    for (const e of entries) t.deepEqual(ix.get(e.filename), { sha256: e.sha256, size: e.size });
    t.is(ix.get('pool/main/nothere_1.0_all.deb'), undefined);
  }
});

test('a 50 MB Packages index is read in flat memory; bad stanzas are malformed with the line', async (t) => {
  const stanza = (i: number) => `Package: pkg${i}\nVersion: 1.${i}\nArchitecture: amd64\nMaintainer: someone <s@test.invalid>\nInstalled-Size: 1234\nDepends: libc6 (>= 2.34), libfoo${i % 97}\nFilename: pool/main/p/pkg${i}/pkg${i}_1.${i}_amd64.deb\nSize: ${1000 + i}\nSHA256: ${(i % 16).toString(16).repeat(64)}\nDescription: package ${i}\n ${'a long description line that wraps '.repeat(12)}\n .\n ${'and another paragraph of it '.repeat(10)}\n\n`;
  const count = Math.ceil((50 << 20) / stanza(1).length);
  let produced = 0;
  const source = Readable.from((function* () { for (let i = 0; i < count; i++) { const s = stanza(i); produced += s.length; yield Buffer.from(s); } })());
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  let n = 0;
  let sizes = 0;
  for await (const e of readPackages(source)) {
    n++;
    sizes += e.size;
    if ((n & 1023) === 0) peak = Math.max(peak, process.memoryUsage().rss);
  }
  t.true(produced >= 50 << 20);
  t.is(n, count);
  t.is(sizes, count * 1000 + (count * (count - 1)) / 2);
  t.log(`${count} stanzas, ${(produced / 2 ** 20).toFixed(1)} MiB; RSS grew ${((peak - before) / 2 ** 20).toFixed(1)} MiB`);
  t.true(peak - before < 64 * 2 ** 20, `RSS grew ${((peak - before) / 2 ** 20).toFixed(1)} MiB`);

  // The same index kept as the proxy keeps it: every entry, compactly.
  const again = Readable.from((function* () { for (let i = 0; i < count; i++) yield Buffer.from(stanza(i)); })());
  const heapBefore = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  const ix = await DebIndex.from(again);
  global.gc?.();
  t.is(ix.size, count);
  t.deepEqual(ix.get(`pool/main/p/pkg7/pkg7_1.7_amd64.deb`), { sha256: '7'.repeat(64), size: 1007 });
  const held = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - heapBefore;
  t.log(`indexing ${count} .debs grew heap + buffers by ${(held / 2 ** 20).toFixed(1)} MiB (garbage not yet collected included)`);

  const bad = async (text: string) => {
    const e = await t.throwsAsync(async () => { for await (const _ of readPackages(Readable.from([Buffer.from(text)]))) { /* drain */ } });
    return e as ShoalError;
  };
  t.is((await bad('Package: a\nFilename: pool/a.deb\nSize: 1\nSHA256: xyz\n\n')).code, 'malformed');
  t.is((await bad('Package: a\nFilename: ../../etc/passwd\nSize: 1\nSHA256: ' + 'a'.repeat(64) + '\n\n')).code, 'malformed');
  t.is((await bad('Package: a\nno colon here\n')).code, 'malformed');
  t.is((await bad(`Package: a\nDescription: ${'x'.repeat(70_000)}`)).code, 'malformed');
  const big = await t.throwsAsync(async () => { for await (const _ of readPackages(Readable.from([Buffer.alloc(2048, 0x0a)]), { maxBytes: 1024 })) { /* drain */ } });
  t.is((big as ShoalError).code, 'too-large');
  t.throws(() => parseRelease('Origin: x\nSHA256:\n nothex 12 main/x\n'), { instanceOf: ShoalError, message: /unreadable SHA256 line/ });
  t.throws(() => parseRelease('Origin: x\nSHA256:\n ' + 'a'.repeat(64) + ' 12 ../x\n'), { instanceOf: ShoalError, message: /unsafe path/ });
});
