/**
 * How shoald's Node process is started: V8 flags and glibc malloc settings.
 * They sit in the shebangs of dist/daemon/shoald.js and dist/agent-api/shoal.js
 * (which installed wrappers and npm's bin links execute) and in the test
 * helpers' spawn; test/systemd.test.ts keeps the shebangs in step with this file.
 *
 * --initial-old-space-size=64: every socket read allocates a fresh 64 KiB
 * buffer, and with V8's small default old-space limit the allocation rate of
 * a transfer started a major GC about every 4 MiB received (~240 per GiB),
 * a third of the receiving daemon's CPU. With 64 MiB of starting room there
 * were 4 in 6 GiB. It is a starting limit, not a reservation.
 *
 * MALLOC_ARENA_MAX=2, MALLOC_MMAP_THRESHOLD_=131072: fewer per-thread malloc
 * arenas, and a fixed mmap threshold (glibc otherwise raises it to the size of
 * the largest freed block, 4 MiB here, and later 1–4 MiB buffers fragment the
 * heap). Peak RSS of a receiving daemon: 150 → 144 MiB (mean of 8 runs).
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' };

/** The first line of the executable entry points. */
export function shebang(): string {
  return `#!/usr/bin/env -S ${Object.entries(DAEMON_ENV).map(([k, v]) => `${k}=${v}`).join(' ')} node ${DAEMON_NODE_FLAGS.join(' ')}`;
}
