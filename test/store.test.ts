import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ShoalError } from '../manifests/errors.js';
import { BlobStore } from '../daemon/store/blob-store.js';
import type { BlobLayout } from '../daemon/store/blob.js';
import { BufferPool, copyInto } from '../daemon/buffer-pool.js';
import { alignedSharedBuffer, directIoAvailable, openDirect, writtenBytes } from '../daemon/store/direct-io.js';
import { fileEntry, tmpDir } from './helpers/fixtures.js';

const MiB = 1 << 20;

function layoutOf(data: Buffer, chunkSize = MiB): BlobLayout & { data: Buffer; part(i: number): Buffer } {
  const e = fileEntry('x', data, chunkSize);
  return { sha256: e.sha256, size: e.size, chunkSize, chunks: e.chunks, data, part: (i) => data.subarray(i * chunkSize, Math.min((i + 1) * chunkSize, data.length)) };
}

test('only bytes that match the signed chunk hash are stored; records survive a restart; a torn journal tail is ignored', async (t) => {
  const dir = await tmpDir(t);
  const L = layoutOf(randomBytes(3 * MiB + 100));
  let store = await BlobStore.open(dir, 100 * MiB);
  let blob = await store.ensure(L);
  const bad = Buffer.from(L.part(0));
  bad[10] ^= 1;
  await t.throwsAsync(blob.writeChunk(0, bad), { instanceOf: ShoalError, message: /SHA-256 differs/ });
  await t.throwsAsync(blob.writeChunk(1, L.part(1).subarray(1)), { message: /expected/ });
  await t.throwsAsync(blob.writeChunk(9, L.part(1)), { message: /out of range/ });
  t.is(blob.heldCount, 0);
  t.is(await blob.writeChunk(1, L.part(1)), 'stored');
  t.is(await blob.writeChunk(3, L.part(3)), 'stored');
  t.is(await blob.writeChunk(3, L.part(3)), 'already');
  t.deepEqual([...blob.have], [0, 1, 0, 1]);
  await store.close();
  // A crash mid-append leaves a partial record, and garbage must never count.
  const journal = path.join(dir, 'blobs', `${L.sha256}.journal`);
  await fs.appendFile(journal, Buffer.from([2, 0]));
  store = await BlobStore.open(dir, 100 * MiB);
  blob = store.get(L.sha256)!;
  t.deepEqual([...blob.have], [0, 1, 0, 1]);
  t.false(blob.complete);
  // Held ranges are readable while other chunks are still missing.
  const chunks: Buffer[] = [];
  for await (const c of blob.openRead(MiB, 2 * MiB - 1)) chunks.push(c as Buffer);
  t.true(Buffer.concat(chunks).equals(L.part(1)));
  t.throws(() => blob.openRead(0, 10), { message: /not held/ });
  await blob.writeChunk(0, L.part(0));
  await blob.writeChunk(2, L.part(2));
  await blob.whenComplete();
  t.true(blob.complete);
  await store.close();
  store = await BlobStore.open(dir, 100 * MiB);
  t.true(store.get(L.sha256)!.complete, 'completion record restored');
  await store.close();
});

test('a blob whose data file is missing or short is discarded on start, never trusted', async (t) => {
  const dir = await tmpDir(t);
  const L = layoutOf(randomBytes(2 * MiB));
  let store = await BlobStore.open(dir, 100 * MiB);
  await (await store.ensure(L)).writeChunk(0, L.part(0));
  await store.close();
  await fs.truncate(path.join(dir, 'blobs', `${L.sha256}.data`), MiB);
  store = await BlobStore.open(dir, 100 * MiB);
  t.is(store.get(L.sha256), undefined);
  t.deepEqual(await fs.readdir(path.join(dir, 'blobs')), []);
  await store.close();
});

test('chunks that verify but a whole that does not: blob-mismatch, never complete', async (t) => {
  const dir = await tmpDir(t);
  const L = layoutOf(randomBytes(2 * MiB));
  const store = await BlobStore.open(dir, 100 * MiB);
  const blob = await store.ensure({ ...L, sha256: 'f'.repeat(64) });
  blob.startHashing();
  await blob.writeChunk(0, L.part(0));
  await blob.writeChunk(1, L.part(1));
  await t.throwsAsync(blob.whenComplete(), { instanceOf: ShoalError, message: /whole file hashes/ });
  t.false(blob.complete);
  await store.close();
});

test('eviction is LRU under the byte budget and spares pinned and in-use blobs', async (t) => {
  const dir = await tmpDir(t);
  const store = await BlobStore.open(dir, 10 * MiB);
  const [a, b, c, d] = [0, 1, 2, 3].map(() => layoutOf(randomBytes(3 * MiB)));
  const ba = await store.ensure(a!);
  await new Promise((r) => setTimeout(r, 5));
  const bb = await store.ensure(b!);
  await new Promise((r) => setTimeout(r, 5));
  await store.ensure(c!);
  await store.setPinned(a!.sha256, true);
  const release = store.hold(b!.sha256);
  // 9 MiB used; 3 more need 2 freed: a is pinned, b is in use, so c (newest) goes.
  await store.ensure(d!);
  t.truthy(store.get(a!.sha256));
  t.truthy(store.get(b!.sha256));
  t.is(store.get(c!.sha256), undefined);
  release();
  t.is(ba.pinned, true);
  void bb;
  await t.throwsAsync(store.ensure(layoutOf(randomBytes(11 * MiB))), { instanceOf: ShoalError, message: /larger than the cache budget/ });
  await store.close();
});

test('ENOSPC while storing a chunk is a clear no-space error and nothing is recorded', async (t) => {
  if (process.getuid?.() !== 0) return t.log('skipped: mounting a small tmpfs needs root') as unknown as void;
  const dir = await tmpDir(t);
  const mnt = path.join(dir, 'small');
  await fs.mkdir(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
  } catch (e) {
    t.log(`skipped: cannot mount tmpfs here (${(e as Error).message.split('\n')[0]})`);
    t.pass();
    return;
  }
  t.teardown(() => { try { execFileSync('umount', ['-l', mnt]); } catch { /* gone */ } });
  const L = layoutOf(randomBytes(5 * MiB));
  const store = await BlobStore.open(mnt, 100 * MiB);
  const blob = await store.ensure(L);
  await blob.writeChunk(0, L.part(0));
  await blob.writeChunk(1, L.part(1));
  await new Promise((r) => setTimeout(r, 150)); // the group commit makes chunks 0 and 1 durable
  // Fill the filesystem so the next chunk cannot land.
  const filler = await fs.open(path.join(mnt, 'filler'), 'w');
  try { for (;;) await filler.write(Buffer.alloc(256 * 1024)); } catch { /* full */ }
  await filler.close();
  const e = await t.throwsAsync(async () => { for (let i = 2; i < 5; i++) await blob.writeChunk(i, L.part(i)); }, { instanceOf: ShoalError });
  t.is(e?.code, 'no-space');
  t.regex(e!.message, /no space left/);
  const held = blob.heldCount;
  await store.close();
  const again = await BlobStore.open(mnt, 100 * MiB);
  const recorded = again.get(L.sha256)!.heldCount;
  // Durable chunks stay recorded; a record that could not be written (disk full) is simply absent.
  t.true(recorded >= 2 && recorded <= held, `recorded ${recorded}, written ${held}`);
  for (let i = 0; i < 5; i++) if (again.get(L.sha256)!.have[i]) t.true(Buffer.compare((await fs.readFile(path.join(mnt, 'blobs', `${L.sha256}.data`))).subarray(i * MiB, (i + 1) * MiB), L.part(i)) === 0);
  await again.close();
});

/** Bytes of `file` in the page cache (util-linux fincore), or undefined where it cannot tell. */
function residentBytes(file: string): number | undefined {
  try {
    return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim());
  } catch {
    return undefined;
  }
}

test.serial('chunks in aligned pool buffers are written past the page cache (O_DIRECT), the short last one through it; all read back and survive a restart', async (t) => {
  const dir = await tmpDir(t);
  const probe = path.join(dir, 'probe');
  await fs.writeFile(probe, '');
  const h = await openDirect(probe);
  if (!h) {
    t.log(`skipped: ${directIoAvailable ? `the file system of ${dir} refuses O_DIRECT` : 'no buffer-address addon (not built) or no O_DIRECT on this platform'}`);
    t.pass();
    return;
  }
  await h.close();
  const L = layoutOf(randomBytes(6 * MiB + 1000));
  const pool = new BufferPool(2);
  const before = { ...writtenBytes };
  let store = await BlobStore.open(dir, 100 * MiB);
  const blob = await store.ensure(L);
  blob.startHashing(); // as a download does: the whole-blob hash takes the bytes from memory, not the file
  for (let i = 0; i < L.chunks.length; i++) {
    const lease = await pool.acquire(L.part(i).length);
    copyInto(lease.buf, L.part(i), 0);
    t.is(await blob.writeChunk(i, lease.buf), 'stored');
    lease.release();
  }
  await blob.whenComplete();
  t.is(writtenBytes.direct - before.direct, 6 * MiB, 'the six whole chunks');
  t.is(writtenBytes.cached - before.cached, 1000, 'the 1000-byte last chunk');
  const file = path.join(dir, 'blobs', `${L.sha256}.data`);
  const resident = residentBytes(file);
  if (resident === undefined) t.log('fincore missing: page-cache residency not checked');
  else t.true(resident <= 8192, `only the last chunk's page is cached (${resident} bytes)`);
  t.true((await fs.readFile(file)).equals(L.data), 'read back through the page cache: the same bytes');
  // Reads of a chunk written with O_DIRECT, as a peer's request makes them.
  const sent: Buffer[] = [];
  await blob.sendRange(2 * MiB, 3 * MiB - 1, Buffer.alloc(256 * 1024), async (b) => { sent.push(Buffer.from(b)); });
  t.true(Buffer.concat(sent).equals(L.part(2)), 'served to a peer: the same bytes');
  await store.close();
  store = await BlobStore.open(dir, 100 * MiB);
  t.true(store.get(L.sha256)!.complete, 'durable and recorded: complete after a restart');
  await store.close();
});

test.serial('directWrites: false, a buffer O_DIRECT cannot take, or a blob other peers are downloading goes through the page cache', async (t) => {
  const dir = await tmpDir(t);
  const L = layoutOf(randomBytes(2 * MiB));
  const before = { ...writtenBytes };
  const store = await BlobStore.open(dir, 100 * MiB, {}, { directWrites: false });
  const blob = await store.ensure(L);
  const aligned = alignedSharedBuffer(MiB);
  copyInto(aligned, L.part(0), 0);
  t.is(await blob.writeChunk(0, aligned), 'stored');
  await store.close();
  const other = await BlobStore.open(path.join(dir, 'b'), 100 * MiB);
  const b2 = await other.ensure(L);
  // One byte into shared memory: misaligned for O_DIRECT whatever the allocator did.
  const odd = Buffer.from(new SharedArrayBuffer(MiB + 1), 1, MiB);
  copyInto(odd, L.part(1), 0);
  t.is(await b2.writeChunk(1, odd), 'stored');
  await other.close();
  t.is(writtenBytes.direct - before.direct, 0);
  t.is(writtenBytes.cached - before.cached, 2 * MiB);
  // Direct writes allowed and an aligned buffer, but other peers are downloading this blob:
  // they will ask for the chunk within seconds, so it stays in the page cache.
  const third = await BlobStore.open(path.join(dir, 'c'), 100 * MiB);
  const b3 = await third.ensure(L);
  b3.peersDownloading = true;
  copyInto(aligned, L.part(0), 0);
  t.is(await b3.writeChunk(0, aligned), 'stored');
  t.is(writtenBytes.direct - before.direct, 0, 'peers downloading: not past the page cache');
  t.is(writtenBytes.cached - before.cached, 3 * MiB);
  b3.peersDownloading = false;
  copyInto(aligned, L.part(1), 0);
  t.is(await b3.writeChunk(1, aligned), 'stored');
  const direct = writtenBytes.direct - before.direct;
  if (await openDirect(path.join(dir, 'c', 'blobs', `${L.sha256}.data`)).then(async (h) => { await h?.close(); return !!h; })) t.is(direct, MiB, 'alone again: O_DIRECT');
  else t.is(direct, 0, 'no O_DIRECT here: page cache');
  await third.close();
});
