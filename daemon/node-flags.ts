/**
 * How shoald's Node process is started: V8 flags and glibc malloc settings.
 * They sit in the shebangs of dist/daemon/shoald.js and dist/agent-api/shoal.js
 * (which installed wrappers and npm's bin links execute) and in the test
 * helpers' spawn; test/systemd.test.ts keeps the shebangs in step with this file.
 *
 * --expose-gc: lets gc-pacer.ts run a young-generation GC every 4 MiB
 * received. Without it, dead 64 KiB socket read buffers piled up to V8's
 * 32 MiB trigger. Before the pacer, their promotion into the old generation
 * set off a major GC about every 4 MiB received. `--initial-old-space-size=64`
 * papered over that by letting the old generation grow, which cost RSS on long
 * transfers. The pacer removes the cause, so that flag is gone.
 *
 * --liftoff-only: undici's HTTP parser is WebAssembly. When it got hot at the
 * start of a transfer, V8 recompiled it with TurboFan on a background thread,
 * and that one compile peaked at 30–40 MiB of malloc (heaptrack). The
 * baseline (Liftoff) code does the same work: the parser only counts body
 * bytes. Receiver CPU per GiB did not change measurably.
 *
 * MALLOC_ARENA_MAX=2, MALLOC_MMAP_THRESHOLD_=131072: fewer per-thread malloc
 * arenas, and a fixed mmap threshold. glibc otherwise raises the threshold to
 * the size of the largest freed block (4 MiB here), and later 1–4 MiB buffers
 * fragment the heap.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--expose-gc', '--liftoff-only'];
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' };

/** The first line of the executable entry points. */
export function shebang(): string {
  return `#!/usr/bin/env -S ${Object.entries(DAEMON_ENV).map(([k, v]) => `${k}=${v}`).join(' ')} node ${DAEMON_NODE_FLAGS.join(' ')}`;
}
