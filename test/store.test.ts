import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ShoalError } from '../daemon/errors.js';
import { BlobStore } from '../daemon/store/blob-store.js';
import type { BlobLayout } from '../daemon/store/blob.js';
import { BufferPool, copyInto } from '../daemon/store/buffer-pool.js';
import { TokenBucket } from '../daemon/common/limits.js';
import { fileEntry, tmpDir } from './helpers/fixtures.js';
import { requires } from './helpers/requires.js';

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
  t.true(store.get(L.sha256)!.complete, 'every chunk recorded: complete after a restart');
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

test('bytes changed on disk while the daemon was stopped are never served: the first read drops the chunk and the journal forgets it', async (t) => {
  const dir = await tmpDir(t);
  const L = layoutOf(randomBytes(4 * MiB));
  let store = await BlobStore.open(dir, 100 * MiB);
  let blob = await store.ensure(L);
  for (let i = 0; i < 4; i++) await blob.writeChunk(i, L.part(i));
  await blob.whenComplete();
  await store.close();
  const data = path.join(dir, 'blobs', `${L.sha256}.data`);
  const fh = await fs.open(data, 'r+');
  await fh.write(Buffer.from([L.data[MiB + 7]! ^ 0x01]), 0, 1, MiB + 7); // one flipped bit in chunk 1
  await fh.write(Buffer.alloc(MiB), 0, MiB, 3 * MiB); // chunk 3 zeroed
  await fh.close();

  const dropped: number[] = [];
  store = await BlobStore.open(dir, 100 * MiB, { dropped: (_sha, chunks) => dropped.push(...chunks) });
  blob = store.get(L.sha256)!;
  t.true(blob.complete, 'the journal still lists every chunk: only a read can tell');
  const served: Buffer[] = [];
  // A peer's range read: chunk 0 is confirmed and sent; chunk 1 fails its check and is refused.
  t.true(await blob.confirmRange(0, MiB - 1));
  await blob.sendRange(0, MiB - 1, Buffer.alloc(256 << 10), async (b) => { served.push(Buffer.from(b)); });
  t.true(Buffer.concat(served).equals(L.part(0)));
  t.false(await blob.confirmRange(MiB, 2 * MiB - 1), 'the flipped chunk is not served to a peer');
  t.deepEqual([...blob.have], [1, 0, 1, 1]);
  t.false(blob.complete);
  // An agent's read ends with an error before any byte of the zeroed chunk.
  const tail: Buffer[] = [];
  const err = await (async () => { try { for await (const c of blob.openRead(2 * MiB, 4 * MiB - 1)) tail.push(c as Buffer); } catch (e) { return e as Error; } return undefined; })();
  t.regex(String(err?.message), /changed on disk/);
  t.true(Buffer.concat(tail).equals(L.part(2)), 'the good chunk before it came through; not one byte of the zeroed one');
  t.deepEqual([...blob.have], [1, 0, 1, 0]);
  t.deepEqual(dropped, [1, 3]);
  await store.close();
  // Restarted: the dropped chunks are gone for good, the rest held.
  store = await BlobStore.open(dir, 100 * MiB);
  blob = store.get(L.sha256)!;
  t.deepEqual([...blob.have], [1, 0, 1, 0]);
  // Fetched again, the blob is whole.
  await blob.writeChunk(1, L.part(1));
  await blob.writeChunk(3, L.part(3));
  await blob.whenComplete();
  t.true((await fs.readFile(data)).equals(L.data));
  await store.close();
});

test('the scrub re-hashes every held chunk at its rate and drops one that rotted while the daemon runs', async (t) => {
  const dir = await tmpDir(t);
  const L = layoutOf(randomBytes(3 * MiB + 5));
  const store = await BlobStore.open(dir, 100 * MiB);
  const blob = await store.ensure(L);
  for (let i = 0; i < 4; i++) await blob.writeChunk(i, L.part(i));
  await blob.whenComplete();
  t.deepEqual(await store.scrub(new TokenBucket(0)), { chunks: 4, bytes: L.size, bad: 0 });
  const fh = await fs.open(path.join(dir, 'blobs', `${L.sha256}.data`), 'r+');
  await fh.write(Buffer.from('rot'), 0, 3, 2 * MiB + 100);
  await fh.close();
  t.true(await blob.confirmRange(2 * MiB, 3 * MiB - 1), 'confirmed once by this process: a read does not re-hash…');
  t.deepEqual(await store.scrub(new TokenBucket(0)), { chunks: 4, bytes: L.size, bad: 1 }, '…the scrub does');
  t.deepEqual([...blob.have], [1, 1, 0, 1]);
  t.false(await blob.confirmRange(2 * MiB, 3 * MiB - 1));
  const ctl = new AbortController();
  ctl.abort(new Error('stop'));
  await t.throwsAsync(store.scrub(new TokenBucket(0), ctl.signal), { message: 'stop' });
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

requires(process.getuid?.() === 0 ? undefined : 'mounting a small tmpfs needs root')('ENOSPC while storing a chunk is a clear no-space error and nothing is recorded', async (t) => {
  const dir = await tmpDir(t);
  const mnt = path.join(dir, 'small');
  await fs.mkdir(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
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

test('chunks in shared pool buffers are hashed off the main thread, stored, served to a peer and survive a restart', async (t) => {
  const dir = await tmpDir(t);
  const L = layoutOf(randomBytes(6 * MiB + 1000));
  const pool = new BufferPool(2);
  let store = await BlobStore.open(dir, 100 * MiB);
  const blob = await store.ensure(L);
  for (let i = 0; i < L.chunks.length; i++) {
    const lease = await pool.acquire(L.part(i).length);
    t.true(lease.buf.buffer instanceof SharedArrayBuffer);
    copyInto(lease.buf, L.part(i), 0);
    t.is(await blob.writeChunk(i, lease.buf), 'stored');
    lease.release();
  }
  await blob.whenComplete();
  t.true((await fs.readFile(path.join(dir, 'blobs', `${L.sha256}.data`))).equals(L.data));
  const sent: Buffer[] = [];
  await blob.sendRange(2 * MiB, 3 * MiB - 1, Buffer.alloc(256 * 1024), async (b) => { sent.push(Buffer.from(b)); });
  t.true(Buffer.concat(sent).equals(L.part(2)), 'served to a peer: the same bytes');
  await store.close();
  store = await BlobStore.open(dir, 100 * MiB);
  t.true(store.get(L.sha256)!.complete, 'durable and recorded: complete after a restart');
  await store.close();
});

test('a learned blob (only its whole SHA-256 known) shares only what it fetched itself, is complete only once proven whole, and keeps its hashes across a restart', async (t) => {
  const dir = await tmpDir(t);
  const L = layoutOf(randomBytes(3 * MiB + 7));
  const learned: BlobLayout = { sha256: L.sha256, size: L.size, chunkSize: MiB, chunks: [], learned: true };
  let store = await BlobStore.open(dir, 100 * MiB);
  const blob = await store.ensure(learned);
  t.true(blob.unproven);
  t.is(await blob.writeChunk(0, L.part(0), true), 'stored');
  t.is(await blob.writeChunk(1, L.part(1), false), 'stored');
  t.true(blob.servable(0), 'fetched from the origin by us: shared');
  t.false(blob.servable(1), 'from a peer, unproven: not passed on');
  // A wrong chunk is taken (nothing can tell yet), and the proof fails.
  const bad = Buffer.from(L.part(2));
  bad[0] ^= 1;
  await blob.writeChunk(2, bad, false);
  await blob.writeChunk(3, L.part(3), true);
  await blob.whenAllDurable();
  t.false(await store.prove(blob));
  t.false(blob.complete);
  await blob.drop([2], 'changed-on-disk');
  t.is(await blob.writeChunk(2, L.part(2), true), 'stored', 'the replaced chunk learns its true hash');
  await blob.whenAllDurable();
  t.true(await store.prove(blob));
  t.true(blob.complete);
  t.true(blob.servable(1), 'proven: every chunk is shared');
  t.deepEqual(blob.chunks, L.chunks);
  await store.close();
  store = await BlobStore.open(dir, 100 * MiB);
  const again = store.get(L.sha256)!;
  t.true(again.complete);
  t.deepEqual(again.chunks, L.chunks, 'the learned hashes were persisted');
  t.is((await store.ensure(learned)).sha256, L.sha256, 'asked by hash again: the same blob');
  await store.close();
});

test('an unproven learned blob starts over after a restart: its chunk hashes were only claims', async (t) => {
  const dir = await tmpDir(t);
  const L = layoutOf(randomBytes(2 * MiB));
  let store = await BlobStore.open(dir, 100 * MiB);
  const blob = await store.ensure({ sha256: L.sha256, size: L.size, chunkSize: MiB, chunks: [], learned: true });
  await blob.writeChunk(0, L.part(0), true);
  await store.close();
  store = await BlobStore.open(dir, 100 * MiB);
  const again = store.get(L.sha256)!;
  t.true(again.unproven);
  t.is(again.heldCount, 0);
  await store.close();
});
