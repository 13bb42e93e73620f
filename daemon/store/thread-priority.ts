/**
 * Per-thread scheduling priority. On Linux the nice value belongs to a thread,
 * so a worker thread can step back without slowing the rest of the process.
 *
 * The hash thread uses this. Hashing is throughput work that can queue, while
 * the threads that move bytes (the main thread's sockets, a serving peer, the
 * machine's own work) are latency work. With the hash thread at nice 0 on two
 * cores, a woken socket thread waited for a time slice and the transfer
 * stalled in between. At +5, 1 GiB from one peer took 1487 instead of 1576 ms
 * (median of 20 interleaved fresh receivers each; docs/benchmarks.md).
 */
import { readlinkSync } from 'node:fs';
import os from 'node:os';

/** How far the hash thread steps back from the rest of the daemon. */
export const HASH_THREAD_NICE = 5;

/** The calling thread's kernel id, or undefined where /proc/thread-self does not exist. */
export function threadId(): number | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isSafeInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined;
  }
}

/** Raises the calling thread's nice value by `by` (to at most 19); the new value, or undefined where it cannot. */
export function lowerThreadPriority(by: number): number | undefined {
  const tid = threadId();
  if (tid === undefined) return undefined;
  try {
    const next = Math.min(19, os.getPriority(tid) + by);
    os.setPriority(tid, next);
    return next;
  } catch {
    return undefined;
  }
}
