/** The hash pool: chunk digests off the main thread and whole-blob streams fed from memory or the file. */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { copyInto } from '../daemon/buffer-pool.js';
import { HashPool } from '../daemon/store/hash-pool.js';
import { HASH_THREAD_NICE, threadId } from '../daemon/store/thread-priority.js';
import { sharedCopy as shared, tmpDir } from './helpers/fixtures.js';
import { sha256Hex as sha } from '../manifests/canonical.js';


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
  await new Promise((r) => setTimeout(r, 600));
  t.is(pool.running, 0, 'idle threads are stopped');
  t.is(await pool.digest(inShared), sha(big), 'and started again on demand');
  // A thread that dies with digests queued: they are done in place instead.
  const dying = terminateThreads(pool);
  t.deepEqual(await Promise.all([pool.digest(inShared), pool.digest(inShared)]), [sha(big), sha(big)]);
  await Promise.all(dying);
  t.is(await pool.digest(inShared), sha(big), 'and the next call starts a fresh thread');
});

test('a whole-file stream fed in order from memory, out of order from the file, gives the file hash', async (t) => {
  const pool = new HashPool(1, 200);
  const dir = await tmpDir(t);
  const cs = 1 << 20;
  const data = randomBytes(8 * cs + 1000);
  const file = path.join(dir, 'blob.data');
  await fs.writeFile(file, data);
  const chunk = (i: number) => shared(data.subarray(i * cs, Math.min(data.length, (i + 1) * cs)));
  const s = pool.stream(file);
  await s.feed(0, chunk(0));
  await s.feed(2 * cs, chunk(2)); // ahead of the stream: ignored, read from the file later
  s.advance(2 * cs); // chunk 1 is read from the file
  await s.feed(2 * cs, chunk(2)); // now next in line: hashed from memory
  await s.feed(2 * cs, chunk(2)); // a repeat is ignored
  t.is(await s.finish(data.length), sha(data));
  await t.throwsAsync(s.finish(data.length), { message: /closed/ });

  const short = pool.stream(file);
  await t.throwsAsync(short.finish(data.length + 1), { message: /ended at/ }, 'a data file shorter than the blob is an error, not a digest');
  const missing = pool.stream(path.join(dir, 'nope'));
  await t.throwsAsync(missing.finish(10), { message: /ENOENT/ });
});

test('copyInto copies exactly the span into shared memory', (t) => {
  const target = Buffer.from(new SharedArrayBuffer(16));
  copyInto(target, Buffer.from('abcdef'), 5);
  copyInto(target, Buffer.alloc(0), 2);
  t.is(target.toString('latin1'), '\0\0\0\0\0abcdef\0\0\0\0\0');
});

/** Nice values of this process's threads, from /proc (Linux). */
async function threadNices(): Promise<number[]> {
  const out: number[] = [];
  for (const tid of await fs.readdir('/proc/self/task')) {
    const stat = await fs.readFile(`/proc/self/task/${tid}/stat`, 'utf8').catch(() => '');
    if (stat) out.push(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
  }
  return out;
}

// Serial: the other tests here start hash threads of their own, which would be counted too.
test.serial('the hash thread runs at a lower priority than the rest of the process', async (t) => {
  if (threadId() === undefined) {
    t.log('skipped: no /proc/thread-self, so threads cannot be told apart here');
    t.pass();
    return;
  }
  const base = os.getPriority(threadId()!);
  const want = Math.min(19, base + HASH_THREAD_NICE);
  const count = async () => (await threadNices()).filter((n) => n === want).length;
  const before = await count();
  const pool = new HashPool(1, 60_000);
  const data = randomBytes(1 << 20);
  t.is(await pool.digest(shared(data)), sha(data), 'the thread hashes as before');
  t.is(await count(), before + 1, `the pool's one thread runs at nice ${want}: ${(await threadNices()).join(' ')}`);
  t.is(os.getPriority(threadId()!), base, 'the main thread keeps its priority');
  await Promise.all(terminateThreads(pool));
});
