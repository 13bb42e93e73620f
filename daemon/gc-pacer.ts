/**
 * Young-generation GCs paced by the bytes the daemon receives.
 *
 * Every socket read undici makes allocates a fresh 64 KiB buffer outside the JS
 * heap, and the HTTP client drops it as soon as its bytes are copied out. That
 * is the origin client's case; peer ranges read into the chunk buffers and
 * allocate nothing per read (swarm/range-reader.ts). V8 frees such
 * buffers only at a GC, and a transfer allocates little else on the JS heap,
 * so V8 scavenges only once 32 MiB of them are pending (a constant in V8, not
 * a flag). Those dead buffers, and the malloc heap that holds them, were a
 * fifth of a receiving daemon's peak RSS.
 *
 * A scavenge every 4 MiB received bounds them to a few MiB. A scavenge of a
 * near-empty young generation takes a fraction of a millisecond: about 0.1 CPU-s
 * per GiB in all. Peak RSS of a receiving daemon fell by about 10 MiB
 * (docs/benchmarks.md).
 *
 * These scavenges run single-threaded. A young generation holding a few
 * hundred KiB is too little work to share, yet V8 handed it to helper threads
 * and the main thread waited for them: on two busy cores, 0.6 of each
 * scavenge's 0.96 ms was that wait (--trace-gc-nvp: 267 ms of pauses per GiB
 * received, 183 ms single-threaded). The receiving daemon's CPU per GiB fell
 * from 2.38 to 2.24 s (medians of 6 interleaved runs). Set at run time, not as
 * a command-line flag: a V8 that no longer knows the flag ignores it instead
 * of refusing to start.
 *
 * It needs `--expose-gc` (DAEMON_NODE_FLAGS); without it, it does nothing.
 */
import v8 from 'node:v8';

export const GC_STEP_BYTES = 4 << 20;

type GcFn = (o: { type: 'minor' }) => void;
let pending = 0;

if ((globalThis as { gc?: GcFn }).gc) v8.setFlagsFromString('--no-parallel-scavenge');

/** Counts n bytes just received from a socket, and scavenges every GC_STEP_BYTES. */
export function received(n: number): void {
  pending += n;
  if (pending < GC_STEP_BYTES) return;
  pending = 0;
  (globalThis as { gc?: GcFn }).gc?.({ type: 'minor' });
}
