/**
 * The native paired hasher against OpenSSL, and its use by the hash pool and
 * the blob: a chunk check that also advances the whole-blob hash must give
 * exactly OpenSSL's digests, and bad bytes must never reach the whole hash.
 */
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { BlobStore } from '../daemon/store/blob-store.js';
import { Blob } from '../daemon/store/blob.js';
import { HashPool, hashPool, type HashStream } from '../daemon/store/hash-pool.js';
import { hashingEngine, newContext, sha256Pair } from '../daemon/store/sha256-pair.js';
import { fileEntry, sharedCopy as shared, tmpDir } from './helpers/fixtures.js';
import { sha256Hex as sha } from '../manifests/canonical.js';

const MiB = 1 << 20;

// Without it the daemon hashes with OpenSSL; the pool and blob tests below still run on that path.
const native = sha256Pair;
const why = process.env.SHOAL_NATIVE === '0' ? 'SHOAL_NATIVE=0' : 'not built (no C compiler at build time) or no x86 SHA extensions on this CPU';
if (!native) console.log(`sha256-pair: native hasher unavailable (${why}); testing the OpenSSL path only`);
const nativeTest = native ? test : test.skip;
// The blob tests share the process-wide hash pool's counters and Blob.pairWaitMs: one at a time.
const nativeSerial = native ? test.serial : test.serial.skip;

nativeTest('pair, update and digest give OpenSSL\'s digests for any data split any way', (t) => {
  const p = native!;
  fc.assert(fc.property(
    fc.uint8Array({ maxLength: 4096 }),
    fc.array(fc.tuple(fc.nat(700), fc.boolean()), { maxLength: 12 }),
    (bytes, cuts) => {
      const data = Buffer.from(bytes);
      const ctx = newContext(p);
      let pos = 0;
      for (const [len, pair] of [...cuts, [data.length, true] as [number, boolean]]) {
        const piece = data.subarray(pos, Math.min(data.length, pos + len));
        if (pair) {
          if (p.pair(ctx, piece).toString('hex') !== sha(piece)) return false;
        } else {
          p.update(ctx, piece);
        }
        pos += piece.length;
        if (p.digest(ctx).toString('hex') !== sha(data.subarray(0, pos))) return false; // digest leaves ctx as it was
      }
      return pos === data.length;
    },
  ), { numRuns: 300 });
  // Large, block-aligned pairs over shared memory: the path downloads take.
  const big = shared(randomBytes(4 * MiB + 64));
  const ctx = newContext(p);
  t.is(p.pair(ctx, big.subarray(0, 4 * MiB)).toString('hex'), sha(big.subarray(0, 4 * MiB)));
  t.is(p.pair(ctx, big.subarray(4 * MiB)).toString('hex'), sha(big.subarray(4 * MiB)));
  t.is(p.digest(ctx).toString('hex'), sha(big));
  t.regex(hashingEngine, /sha256-pair/);
});

nativeTest('pairUpdate feeds two contexts the same bytes, in one pass at block boundaries or two elsewhere', (t) => {
  const p = native!;
  fc.assert(fc.property(
    fc.uint8Array({ maxLength: 1024 }),
    fc.uint8Array({ maxLength: 300 }),
    fc.array(fc.nat(400), { maxLength: 8 }),
    (prefix, bytes, cuts) => {
      // `b` starts with a prefix of any length (the whole-blob hash), `a` fresh (a chunk).
      const a = newContext(p);
      const b = newContext(p);
      p.update(b, prefix);
      const data = Buffer.from(bytes);
      let pos = 0;
      for (const len of [...cuts, data.length]) {
        const piece = data.subarray(pos, Math.min(data.length, pos + len));
        p.pairUpdate(a, b, piece);
        pos += piece.length;
      }
      return p.digest(a).toString('hex') === sha(data) && p.digest(b).toString('hex') === sha(Buffer.concat([prefix, data]));
    },
  ), { numRuns: 300 });
  const ctx = newContext(p);
  t.throws(() => p.pairUpdate(ctx, ctx, Buffer.alloc(64)), { instanceOf: TypeError, message: /two different/ });
  t.throws(() => p.pairUpdate(ctx, new Uint8Array(8), Buffer.alloc(64)), { instanceOf: TypeError, message: /context/ });
});

nativeTest('a bad context or argument is a thrown error, not a crash', (t) => {
  const p = native!;
  t.throws(() => p.update(new Uint8Array(8), Buffer.alloc(1)), { instanceOf: TypeError, message: /context/ });
  t.throws(() => p.pair(new Uint8Array(new ArrayBuffer(p.contextBytes + 1), 1, p.contextBytes), Buffer.alloc(1)), { instanceOf: TypeError, message: /aligned/ });
  t.throws(() => p.pair(newContext(p), 'text' as unknown as Uint8Array), { instanceOf: TypeError, message: /Uint8Array/ });
  t.throws(() => (p.digest as unknown as () => void)(), { instanceOf: TypeError, message: /missing/ });
});

test('stream.check: in-order chunks pair, bad bytes never enter the whole hash, the rest is read from the file', async (t) => {
  const pool = new HashPool(1, 200);
  const dir = await tmpDir(t);
  const cs = MiB;
  const data = randomBytes(4 * cs + 1000);
  const file = path.join(dir, 'blob.data');
  await fs.writeFile(file, data);
  const chunk = (i: number) => shared(data.subarray(i * cs, Math.min(data.length, (i + 1) * cs)));
  const s = pool.stream(file);
  t.is(s.pairs, !!native);
  const bad = chunk(0);
  bad[7] ^= 1;
  t.deepEqual(await s.check(0, bad, sha(chunk(0))), { digest: sha(bad), fed: false }, 'a corrupt chunk gets its real digest and is not fed');
  t.deepEqual(await s.check(0, chunk(0), sha(chunk(0))), { digest: sha(chunk(0)), fed: !!native });
  t.deepEqual(await s.check(2 * cs, chunk(2), sha(chunk(2))), { digest: sha(chunk(2)), fed: false }, 'ahead of the stream: checked, not fed');
  if (!native) s.advance(cs); // the OpenSSL path takes chunk 0 from the file
  t.deepEqual(await s.check(cs, chunk(1), sha(chunk(1))), { digest: sha(chunk(1)), fed: !!native });
  s.advance(3 * cs); // chunk 2 comes from the file
  t.deepEqual(await s.check(3 * cs, chunk(3), sha(chunk(3))), { digest: sha(chunk(3)), fed: !!native });
  t.deepEqual(await s.check(4 * cs, chunk(4), sha(chunk(4))), { digest: sha(chunk(4)), fed: !!native }, 'a short last chunk pairs too');
  t.is(await s.finish(data.length), sha(data));
  t.is(pool.pairedBytes, native ? data.length - cs : 0, 'all but chunk 2');
});

test.serial('a blob verifies chunks landing out of order, pairing them when the ones before are on their way', async (t) => {
  const dir = await tmpDir(t);
  const data = randomBytes(4 * MiB + 123);
  const e = fileEntry('x', data, MiB);
  const layout = { sha256: e.sha256, size: e.size, chunkSize: MiB, chunks: e.chunks };
  const part = (i: number) => shared(data.subarray(i * MiB, Math.min(data.length, (i + 1) * MiB)));
  const store = await BlobStore.open(dir, 100 * MiB);
  t.teardown(() => store.close());
  const blob = await store.ensure(layout);
  // Long enough that a loaded machine cannot turn a wait into a timeout (the daemon's is 100 ms).
  Blob.pairWaitMs = 10_000;
  blob.startHashing();
  const before = hashPool.pairedBytes;
  // Chunks 0-2 are "being received"; 2 and 1 land first and wait for 0.
  for (const i of [0, 1, 2]) blob.arriving.add(i);
  const bad0 = part(0);
  bad0[0] ^= 1;
  const late = [blob.writeChunk(2, part(2)), blob.writeChunk(1, part(1))];
  await new Promise((r) => setTimeout(r, 200));
  t.is(blob.heldCount, native ? 0 : 2, native ? 'chunks 1 and 2 wait for chunk 0' : 'without pairing nothing waits');
  await t.throwsAsync(blob.writeChunk(0, bad0), { message: /SHA-256 differs/ });
  // Chunks 1 and 2 went to the hash thread right behind the bad chunk 0, so they were
  // verified on their own; the stream reads them back from the file.
  t.deepEqual(await Promise.all(late), ['stored', 'stored']);
  t.is(await blob.writeChunk(0, part(0)), 'stored');
  blob.arriving.clear();
  // Chunk 3 is not on its way: chunk 4 goes ahead at once, unpaired, and the stream reads it back.
  const t0 = performance.now();
  t.is(await blob.writeChunk(4, part(4)), 'stored');
  t.true(performance.now() - t0 < Blob.pairWaitMs / 2, 'no wait for a chunk nobody is receiving');
  t.is(await blob.writeChunk(3, part(3)), 'stored');
  await blob.whenComplete();
  t.true(blob.complete, 'whole-blob SHA-256 matches: the corrupt chunk never reached it');
  t.is(hashPool.pairedBytes - before, native ? 2 * MiB : 0, 'chunks 0 and 3');
});

nativeSerial('a blob sends the checks of chunks waiting in order without waiting for each answer', async (t) => {
  const dir = await tmpDir(t);
  const data = randomBytes(4 * MiB);
  const e = fileEntry('x', data, MiB);
  const part = (i: number) => shared(data.subarray(i * MiB, (i + 1) * MiB));
  const store = await BlobStore.open(dir, 100 * MiB);
  t.teardown(() => store.close());
  const blob = await store.ensure({ sha256: e.sha256, size: e.size, chunkSize: MiB, chunks: e.chunks });
  Blob.pairWaitMs = 10_000;
  blob.startHashing();
  // Count the checks the hash thread holds at once.
  const hasher = (blob as unknown as { hasher: HashStream }).hasher;
  const check = hasher.check.bind(hasher);
  let inflight = 0;
  let most = 0;
  hasher.check = async (...args) => {
    most = Math.max(most, ++inflight);
    try { return await check(...args); } finally { inflight--; }
  };
  const before = hashPool.pairedBytes;
  for (const i of [0, 1, 2, 3]) blob.arriving.add(i);
  const waiting = [3, 2, 1].map((i) => blob.writeChunk(i, part(i)));
  await new Promise((r) => setTimeout(r, 100));
  t.is(most, 0, 'nothing is sent before chunk 0');
  t.is(await blob.writeChunk(0, part(0)), 'stored');
  t.deepEqual(await Promise.all(waiting), ['stored', 'stored', 'stored']);
  t.is(most, 4, 'all four checks were with the hash thread at once');
  t.is(hashPool.pairedBytes - before, 4 * MiB, 'and every one paired');
  await blob.whenComplete();
  t.true(blob.complete);
});

/** A blob of 4 MiB in 1 MiB chunks, hashing, with its parts in shared memory. */
async function hashingBlob(t: ExecutionContext) {
  const dir = await tmpDir(t);
  const data = randomBytes(4 * MiB);
  const e = fileEntry('x', data, MiB);
  const store = await BlobStore.open(dir, 100 * MiB);
  t.teardown(() => store.close());
  const blob = await store.ensure({ sha256: e.sha256, size: e.size, chunkSize: MiB, chunks: e.chunks });
  blob.startHashing();
  return { blob, data, part: (i: number) => shared(data.subarray(i * MiB, (i + 1) * MiB)) };
}

/** Copies `src` into `buf` in pieces of `step` bytes, reporting each, with a pause now and then. */
async function arrive(buf: Buffer, src: Buffer, progress: (n: number) => void, step = 100_003, to = src.length) {
  for (let n = 0; n < to;) {
    const m = Math.min(to, n + step);
    src.copy(buf, n, n, m);
    n = m;
    progress(n);
    if ((n / step) % 3 === 0) await new Promise((r) => setImmediate(r));
  }
}

nativeSerial('live checks: chunks hashed while they arrive pair with the whole-blob hash, in order', async (t) => {
  const { blob, part } = await hashingBlob(t);
  const before = hashPool.pairedBytes;
  const bufs = [0, 1, 2, 3].map(() => shared(Buffer.alloc(MiB)));
  const lives = bufs.map((b, i) => blob.beginChunk(i, b));
  t.true(lives.every(Boolean), 'each chunk is next in line once the one before has begun');
  t.is(blob.beginChunk(1, shared(Buffer.alloc(MiB))), undefined, 'a chunk already being checked cannot begin twice');
  // Bytes arrive in odd-sized pieces, the later chunks' first; the thread follows chunk 0.
  await Promise.all([3, 2, 1, 0].map((i) => arrive(bufs[i]!, part(i), lives[i]!.progress)));
  const results = await Promise.all([0, 1, 2, 3].map((i) => blob.writeChunk(i, bufs[i]!, lives[i])));
  t.deepEqual(results, ['stored', 'stored', 'stored', 'stored']);
  t.is(hashPool.pairedBytes - before, 4 * MiB, 'every chunk paired');
  await blob.whenComplete();
  t.true(blob.complete, 'the whole-blob SHA-256 matches');
});

nativeSerial('live checks: bad bytes and an abandoned download leave the whole-blob hash untouched', async (t) => {
  const { blob, part } = await hashingBlob(t);
  const before = hashPool.pairedBytes;
  // Chunk 0 is corrupt; chunk 1, begun behind it, cannot pair and is checked on its own.
  const b0 = shared(Buffer.alloc(MiB));
  const b1 = shared(Buffer.alloc(MiB));
  const l0 = blob.beginChunk(0, b0)!;
  const l1 = blob.beginChunk(1, b1)!;
  const bad = Buffer.from(part(0));
  bad[MiB - 1] ^= 1;
  await arrive(b0, bad, l0.progress);
  await t.throwsAsync(blob.writeChunk(0, b0, l0), { message: /SHA-256 differs/ });
  await arrive(b1, part(1), l1.progress);
  t.is(await blob.writeChunk(1, b1, l1), 'stored');
  // Chunk 0 again: half arrives, then the download fails. The buffer is reused at once.
  const l0b = blob.beginChunk(0, b0)!;
  t.truthy(l0b, 'after the bad chunk, chunk 0 is next in line again');
  await arrive(b0, part(0), l0b.progress, 65_536, MiB / 2);
  l0b.abandon();
  t.deepEqual(await l0b.result, { digest: undefined, fed: false });
  b0.fill(0xee);
  // A third try lands whole.
  const l0c = blob.beginChunk(0, b0)!;
  await arrive(b0, part(0), l0c.progress);
  t.is(await blob.writeChunk(0, b0, l0c), 'stored');
  // The rest without live checks: chunk 1 is read back from the file, 2 and 3 pair.
  for (const i of [2, 3]) t.is(await blob.writeChunk(i, part(i)), 'stored');
  await blob.whenComplete();
  t.true(blob.complete, 'the whole-blob SHA-256 matches: no bad or abandoned byte reached it');
  t.is(hashPool.pairedBytes - before, 3 * MiB, 'chunks 0, 2 and 3 paired; 1 was hashed alone');
});

nativeSerial('live checks: closing the blob ends a check still waiting for bytes', async (t) => {
  const { blob, part } = await hashingBlob(t);
  const buf = shared(Buffer.alloc(MiB));
  const live = blob.beginChunk(0, buf)!;
  await arrive(buf, part(0), live.progress, 65_536, MiB / 4);
  const t0 = performance.now();
  await blob.close();
  t.deepEqual(await live.result, { digest: undefined, fed: false });
  t.true(performance.now() - t0 < 2000, 'no wait for bytes that will never come');
  await t.throwsAsync(blob.writeChunk(0, buf, live), { message: /closed/ });
});

nativeSerial('live checks: a chunk slow to arrive does not hold back the complete ones behind it', async (t) => {
  const { blob, part } = await hashingBlob(t);
  Blob.pairWaitMs = 300;
  t.teardown(() => { Blob.pairWaitMs = 100; });
  const before = hashPool.pairedBytes;
  const bufs = [0, 1, 2, 3].map(() => shared(Buffer.alloc(MiB)));
  const lives = bufs.map((b, i) => blob.beginChunk(i, b)!);
  // Chunk 0 comes from a slow peer: half of it, then nothing for a while.
  await arrive(bufs[0]!, part(0), lives[0]!.progress, 65_536, MiB / 2);
  await arrive(bufs[1]!, part(1), lives[1]!.progress);
  const t0 = performance.now();
  t.is(await blob.writeChunk(1, bufs[1]!, lives[1]), 'stored');
  const waited = performance.now() - t0;
  t.true(waited >= 250 && waited < 5000, `chunk 1 waited its turn for ${Math.round(waited)} ms, then was checked alone`);
  bufs[1]!.fill(0xee); // its buffer goes back to the pool at once
  await arrive(bufs[0]!, part(0), lives[0]!.progress);
  t.is(await blob.writeChunk(0, bufs[0]!, lives[0]), 'stored');
  for (const i of [2, 3]) {
    await arrive(bufs[i]!, part(i), lives[i]!.progress);
    t.is(await blob.writeChunk(i, bufs[i]!, lives[i]), 'stored');
  }
  await blob.whenComplete();
  t.true(blob.complete, 'the whole-blob SHA-256 matches');
  t.is(hashPool.pairedBytes - before, MiB, 'chunk 0 paired; 1 was checked alone, and 2 and 3 were begun behind it');
});
