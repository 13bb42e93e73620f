import test from 'ava';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DAEMON_NODE_FLAGS } from '../daemon/node-flags.js';
import { ROOT } from './helpers/fixtures.js';

const PACER = fileURLToPath(new URL('../daemon/gc-pacer.js', import.meta.url));

/** Runs a module script in a Node started with `flags`; returns what it printed. */
function nodeOutput(script: string, flags: readonly string[]): string {
  const r = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return r.stdout;
}

/** Runs a module script in a Node started with the daemon's flags; returns its JSON output. */
function runWithDaemonFlags(script: string, flags: readonly string[] = DAEMON_NODE_FLAGS): Record<string, number> {
  return JSON.parse(nodeOutput(script, flags)) as Record<string, number>;
}

// Dead 1 MiB buffers (outside the JS heap, like socket reads), then bytes reported in steps:
// nothing may be collected before a full step, and the step's scavenge must free them.
const SCRIPT = `
import { received, GC_STEP_BYTES } from ${JSON.stringify(PACER)};
const MiB = 1 << 20;
const ab = () => process.memoryUsage().arrayBuffers;
for (let i = 0; i < 24; i++) Buffer.allocUnsafeSlow(MiB).fill(i);
const before = ab();
for (let n = 0; n < GC_STEP_BYTES - MiB; n += MiB) received(MiB);
const short = ab();
received(MiB);
let after = ab();
// Without gc there is nothing to wait for.
const waits = typeof globalThis.gc === 'function' ? 100 : 0;
for (let t = 0; t < waits && after > before - 16 * MiB; t++) { await new Promise((r) => setTimeout(r, 10)); after = ab(); }
console.log(JSON.stringify({ before: before / MiB, short: short / MiB, after: after / MiB, exposed: typeof globalThis.gc === 'function' ? 1 : 0 }));
`;

test('with the daemon flags, a step of received bytes scavenges the dead buffers', (t) => {
  const r = runWithDaemonFlags(SCRIPT);
  t.is(r.exposed, 1, 'the daemon flags expose gc');
  t.true(r.before! >= 24, `24 MiB of dead buffers pending (${r.before} MiB)`);
  t.true(r.short! >= r.before! - 1, `no GC before a full step (${r.before} → ${r.short} MiB)`);
  t.true(r.after! <= r.before! - 16, `the step's scavenge freed them (${r.before} → ${r.after} MiB)`);
});

test('without --expose-gc the pacer does nothing and does not throw', (t) => {
  const r = runWithDaemonFlags(SCRIPT, []);
  t.is(r.exposed, 0);
  t.true(r.after! >= r.before! - 1, `nothing collected (${r.before} → ${r.after} MiB)`);
});

// Young objects that survive a scavenge or two: enough work for V8 to share it with helper threads.
const SURVIVORS = (pacer: boolean) => `
${pacer ? `await import(${JSON.stringify(PACER)});` : ''}
for (let r = 0; r < 20; r++) { const tmp = []; for (let i = 0; i < 20000; i++) tmp.push({ i, s: [i, i] }); globalThis.keep = tmp; gc({ type: 'minor' }); }
`;

/** Scavenges in a child's --trace-gc-nvp output, and how many used helper threads. */
function scavenges(script: string): { all: number; helped: number } {
  const lines = nodeOutput(script, [...DAEMON_NODE_FLAGS, '--trace-gc-nvp']).split('\n').filter((l) => / gc=s /.test(l));
  return { all: lines.length, helped: lines.filter((l) => !/ background\.scavenge\.parallel=0\.00 /.test(l)).length };
}

test('with the pacer loaded, scavenges run on the main thread alone', (t) => {
  const control = scavenges(SURVIVORS(false));
  const paced = scavenges(SURVIVORS(true));
  t.true(paced.all >= 20, `scavenges seen (${paced.all})`);
  t.is(paced.helped, 0, 'no helper thread took part');
  // On one core V8 never shares the work, and there is nothing to compare with.
  if (control.helped === 0) t.log('V8 used no helper threads here even without the pacer');
  else t.log(`without the pacer, ${control.helped} of ${control.all} scavenges used helper threads`);
});

test('npm run demo starts Node with the daemon flags (the demo runs daemons in its own process)', async (t) => {
  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const node = pkg.scripts.demo!.split('&&').map((c) => c.trim()).find((c) => c.startsWith('node '));
  t.truthy(node, `a node command in the demo script: ${pkg.scripts.demo}`);
  for (const flag of DAEMON_NODE_FLAGS) t.true(node!.split(/\s+/).includes(flag), `${flag} in "${node}"`);
});
