/** The hash pool: chunk digests off the main thread, from shared memory or from a file. */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { HashPool } from '../daemon/store/hash-pool.js';
import { sharedCopy as shared, tmpDir } from './helpers/fixtures.js';
import { sha256Hex as sha } from '../manifests/canonical.js';
import { until } from './helpers/until.js';

/** Stops every thread the pool is running, as if it had died. */
function terminateThreads(pool: HashPool): (Promise<number> | undefined)[] {
  return (pool as unknown as { slots: ({ worker: { terminate(): Promise<number> } } | undefined)[] }).slots.map((s) => s?.worker.terminate());
}

test('digests match node:crypto for shared, private and small buffers, and threads stop when idle', async (t) => {
  const pool = new HashPool(2, 200);
  const big = randomBytes(3 << 20);
  const inShared = shared(big);
  t.is(await pool.digest(inShared), sha(big));
  t.is(await pool.digest(inShared.subarray(12345, 12345 + (1 << 20))), sha(big.subarray(12345, 12345 + (1 << 20))));
  t.is(await pool.digest(big), sha(big), 'a private buffer is hashed in place');
  t.is(await pool.digest(Buffer.alloc(0)), sha(Buffer.alloc(0)));
  const many = await Promise.all(Array.from({ length: 12 }, (_, i) => pool.digest(inShared.subarray(i * 256 << 10, (i + 1) * 256 << 10))));
  t.deepEqual(many, Array.from({ length: 12 }, (_, i) => sha(big.subarray(i * 256 << 10, (i + 1) * 256 << 10))));
  t.true(pool.running >= 1);
  await until(() => pool.running === 0, 'idle threads are stopped');
  t.is(await pool.digest(inShared), sha(big), 'and started again on demand');
  // A thread that dies with digests queued: they are done in place instead.
  const dying = terminateThreads(pool);
  t.deepEqual(await Promise.all([pool.digest(inShared), pool.digest(inShared)]), [sha(big), sha(big)]);
  await Promise.all(dying);
  t.is(await pool.digest(inShared), sha(big), 'and the next call starts a fresh thread');
  await pool.stop();
  t.is(pool.running, 0);
});

test('a file range is hashed on a thread; a short or missing file is an error, not a digest', async (t) => {
  const pool = new HashPool(1, 200);
  const dir = await tmpDir(t);
  const data = randomBytes((3 << 20) + 1000);
  const file = path.join(dir, 'blob.data');
  await fs.writeFile(file, data);
  t.is(await pool.digestFile(file, 0, data.length), sha(data));
  t.is(await pool.digestFile(file, 1 << 20, 2 << 20), sha(data.subarray(1 << 20, 3 << 20)));
  await t.throwsAsync(pool.digestFile(file, 0, data.length + 1), { message: /ended at/ });
  await t.throwsAsync(pool.digestFile(path.join(dir, 'nope'), 0, 10), { message: /ENOENT/ });
  await pool.stop();
});
