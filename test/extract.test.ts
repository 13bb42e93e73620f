/** Malicious and valid tar bundles: refused with nothing written outside staging, or extracted safely. */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { extractBundles } from '../agent-api/extract.js';
import { ShoalError } from '../daemon/errors.js';
import { tmpDir } from './helpers/fixtures.js';

type Entry = Partial<tar.Header> & { name: string; body?: Buffer };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const parts: Buffer[] = [];
  pack.on('data', (b: unknown) => { parts.push(b as Buffer); });
  const ended = new Promise<void>((r) => pack.on('end', () => r()));
  for (const { body, ...h } of entries) {
    await new Promise<void>((resolve, reject) => {
      const done = (e?: Error | null) => (e ? reject(e) : resolve());
      if (h.type === 'file') pack.entry(h as tar.Header, body ?? Buffer.alloc(0), done);
      else pack.entry(h as tar.Header, done);
    });
  }
  pack.finalize();
  await ended;
  return Buffer.concat(parts);
}

/** A tar whose header names are written raw, bypassing any normalisation of the packer. */
function rawName(buf: Buffer, index: number, name: string): Buffer {
  const out = Buffer.from(buf);
  const off = index * 512;
  out.fill(0, off, off + 100);
  out.write(name, off, 'latin1');
  // Recompute the header checksum (bytes 148-155 counted as spaces).
  out.fill(0x20, off + 148, off + 156);
  let sum = 0;
  for (let i = off; i < off + 512; i++) sum += out[i]!;
  out.write(`${sum.toString(8).padStart(6, '0')}\0 `, off + 148, 'latin1');
  return out;
}

async function refused(t: ExecutionContext, archive: Buffer, re: RegExp, limits = {}) {
  const dir = await tmpDir(t);
  await fs.writeFile(path.join(dir, 'sentinel'), 'keep');
  const dest = path.join(dir, 'out');
  const e = await t.throwsAsync(extractBundles([async () => Readable.from([archive])], dest, { limits }), { instanceOf: ShoalError });
  t.regex(e?.message ?? '', re);
  t.deepEqual((await fs.readdir(dir)).sort(), ['sentinel'], 'nothing but what was there: no dest, no staging, no escapes');
  await t.throwsAsync(fs.stat('/tmp/shoal-escape-probe'));
}

const file = (name: string, body = Buffer.from('x')): Entry => ({ name, type: 'file', size: body.length, body, mode: 0o644 });

test('path traversal with ".." is refused', async (t) => refused(t, await tarOf([file('ok.txt'), file('a/../../shoal-escape-probe')]), /climbs out/));
test('absolute paths are refused', async (t) => refused(t, rawName(await tarOf([file('placeholder')]), 0, '/tmp/shoal-escape-probe'), /absolute/));
test('backslashes are refused', async (t) => refused(t, rawName(await tarOf([file('placeholder')]), 0, '..\\..\\evil'), /backslash/));
test('symlinks are refused (no symlink escape)', async (t) => refused(t, await tarOf([{ name: 'link', type: 'symlink', linkname: '/tmp' }, file('link/shoal-escape-probe')]), /symlink/));
test('hard links are refused', async (t) => refused(t, await tarOf([file('a'), { name: 'b', type: 'link', linkname: '/etc/passwd' }]), /link/));
test('devices and FIFOs are refused', async (t) => {
  await refused(t, await tarOf([{ name: 'dev', type: 'character-device', devmajor: 1, devminor: 3 }]), /character-device/);
  await refused(t, await tarOf([{ name: 'fifo', type: 'fifo' }]), /fifo/);
});
test('an entry larger than the archive holds (truncated) is refused', async (t) => {
  const whole = await tarOf([file('big.bin', randomBytes(64 * 1024))]);
  await refused(t, whole.subarray(0, 512 + 10_000), /cannot be read/);
});
test('more entries than the cap are refused', async (t) => {
  await refused(t, await tarOf(Array.from({ length: 300 }, (_, i) => file(`f${i}`))), /more than 250 entries/, { maxEntries: 250 });
});
test('an entry bigger than the per-entry cap is refused', async (t) => {
  await refused(t, await tarOf([file('big', randomBytes(4096))]), /more than 1000/, { maxEntryBytes: 1000 });
});
test('a path used twice, or as file and directory, is refused', async (t) => {
  await refused(t, await tarOf([file('a'), file('a')]), /twice/);
  await refused(t, await tarOf([file('a'), file('a/b')]), /both as a file and as a directory/);
});
test('a bundle whose bytes are rejected at the end (hash mismatch) leaves nothing behind', async (t) => {
  const dir = await tmpDir(t);
  const dest = path.join(dir, 'out');
  await t.throwsAsync(extractBundles([async () => Readable.from([await tarOf([file('a')])])], dest, { accept: () => { throw new ShoalError('blob-mismatch', 'bad hash'); } }), { message: /bad hash/ });
  t.deepEqual(await fs.readdir(dir), []);
});

test('a valid bundle extracts: files and directories, setuid and group/other write stripped, existing target swapped atomically', async (t) => {
  const dir = await tmpDir(t);
  const dest = path.join(dir, 'app');
  await fs.mkdir(dest);
  await fs.writeFile(path.join(dest, 'old-file'), 'old');
  const archive = await tarOf([
    { name: 'bin', type: 'directory', mode: 0o777 },
    { ...file('bin/tool', Buffer.from('#!/bin/sh\necho hi\n')), mode: 0o4777 },
    file('./share//doc/readme.txt', Buffer.from('hello')),
  ]);
  const r = await extractBundles([async () => Readable.from([archive])], dest);
  t.deepEqual(r, { files: 2, bytes: 23 });
  t.is((await fs.stat(path.join(dest, 'bin/tool'))).mode & 0o7777, 0o755);
  t.is(await fs.readFile(path.join(dest, 'share/doc/readme.txt'), 'utf8'), 'hello');
  await t.throwsAsync(fs.stat(path.join(dest, 'old-file')), undefined, 'the old tree was replaced');
  t.deepEqual(await fs.readdir(dir), ['app']);
});
