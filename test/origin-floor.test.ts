/** The rate floor under origin bodies and the assembler that reads a body whole: pure logic, fake time. */
import test from 'ava';
import { RateFloor } from '../daemon/common/limits.js';
import { ChunkAssembler } from '../daemon/store/chunk-assembler.js';
import { FakeClock } from './helpers/fake-clock.js';

test('the rate floor judges only the time spent waiting for the other side', async (t) => {
  const clock = new FakeClock();
  const f = new RateFloor(1000, () => clock.now());
  await clock.advance(1000);
  f.add(999);
  t.true(f.check(), '999 bytes in a second is below 1000 bytes/s');
  await clock.advance(1000);
  f.add(1000);
  t.false(f.check());
  // 9 s of the window in our own limiter, 1 s theirs with 200 bytes: we were the slow side.
  f.ownBegin();
  await clock.advance(9000);
  f.ownEnd();
  await clock.advance(1000);
  f.add(200);
  t.false(f.check(), 'not judged when they had less than half the window');
  // An ongoing wait of ours spans the window's end: only their part counts.
  await clock.advance(4000);
  f.add(5000);
  f.ownBegin();
  await clock.advance(1000);
  t.false(f.check(), '5000 bytes in their 4 s');
  await clock.advance(2000);
  f.ownEnd();
  await clock.advance(2000);
  t.true(f.check(), 'nothing in their 2 s');
  t.false(new RateFloor(0, () => clock.now()).check(), 'a floor of 0 never cuts');
});

const layout = (chunkSize: number, size: number) => ({
  chunkLength: (i: number) => Math.min(chunkSize, size - i * chunkSize),
  chunkRange: (i: number) => ({ start: i * chunkSize, end: Math.min(size, (i + 1) * chunkSize) }),
});

test('a body read whole: bytes of chunks outside the list and of skipped chunks are passed over; a restart resumes at the exact byte', async (t) => {
  const body = Buffer.from(Array.from({ length: 50 }, (_, i) => i));
  const got = new Map<number, number[]>();
  const held = new Set<number>();
  const a = new ChunkAssembler(layout(10, 50), [1, 3, 4], Buffer.alloc(10), async (c, b) => { got.set(c, [...b]); }, (c) => held.has(c));
  t.is(a.restart(), 10);
  await a.push(body.subarray(10, 23)); // chunk 1, then 20-22 of chunk 2, not ours
  await a.push(body.subarray(23, 35)); // 23-29 passed over, half of chunk 3
  t.deepEqual([...got.keys()], [1]);
  t.is(a.nextOffset, 35, 'the body broke off in chunk 3: resume at byte 35');
  // Chunk 4 arrived from a peer meanwhile: it is passed over when its first byte comes.
  held.add(4);
  t.is(a.restart(), 35);
  await a.push(body.subarray(35, 50));
  t.deepEqual([...got.keys()], [1, 3]);
  t.deepEqual(got.get(1), [...body.subarray(10, 20)]);
  t.deepEqual(got.get(3), [...body.subarray(30, 40)]);
  t.true(a.done);
});
