/** What people see: a live progress bar on a terminal, plain lines elsewhere, --help on every verb. */
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { ProgressBar } from '../agent-api/agent-verbs.js';
import type { FetchStatus } from '../agent-api/client.js';
import { usage } from '../agent-api/cli.js';
import { originWithRelease } from './helpers/release.js';
import { startSite } from './helpers/site.js';
import { CLI, runShoal, tmpDir } from './helpers/fixtures.js';
import { requires, hasCommand } from './helpers/requires.js';
import { until } from './helpers/until.js';

const MiB = 1 << 20;

test('the progress bar shows bytes, rate, ETA and the share from peers', (t) => {
  const bar = new ProgressBar(10);
  const st = (held: number, peer: number): FetchStatus => ({ id: 'x', state: 'running', kind: 'native', name: 'app', version: '1', size: 100 * MiB, held, bytes: { origin: held - peer, peer }, files: [], createdAt: '' });
  bar.render(st(0, 0), 0);
  const line = bar.render(st(50 * MiB, 40 * MiB), 5000);
  t.is(line, 'app 1 [#####.....]  50% 50.0 MiB/100.0 MiB 10.0 MiB/s ETA 5s 80% from peers');
});

test('on a terminal `shoal fetch` draws a live bar; without one it prints plain lines', async (t) => {
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 12 * MiB, bytesPerSec: 6 * MiB });
  const { daemons } = await startSite(t, dir, 1, rel.trusted);
  // `script` gives the command a pseudo-terminal, as a person's shell would.
  const cmd = `${process.execPath} ${CLI} fetch ${rel.manifestUrl} --api ${daemons[0]!.api} -o ${path.join(dir, 'tty.bin')}`;
  const tty = await new Promise<string>((resolve) => execFile('script', ['-qec', cmd, '/dev/null'], { timeout: 60_000 }, (_e, out) => resolve(out)));
  t.regex(tty, /\r.*\[[#.]{10,28}\]\s+\d+% .* MiB\/s ETA/, 'a redrawn bar with rate and ETA');
  t.regex(tty, /app 1\.0\.0: 1 file\(s\) verified/);
  // The second time it is cached: the plain (non-TTY) output is line per update, no carriage returns.
  const plain = await runShoal(['fetch', rel.manifestUrl, '--api', daemons[0]!.api, '-o', path.join(dir, 'plain.bin')]);
  t.is(plain.code, 0);
  t.false(plain.stderr.includes('\r'));
  t.regex(plain.stderr, /^done 100\.0% 12\.0 MiB\/12\.0 MiB/m);
});

test('the bar fits the width it is given: parts give way in order, never a wrapped line', (t) => {
  const st: FetchStatus = { id: 'x', state: 'running', kind: 'native', name: 'a-long-application-name', version: '10.20.30', size: 1000 * MiB, held: 500 * MiB, bytes: { origin: 100 * MiB, peer: 400 * MiB }, files: [], createdAt: '' };
  for (const cols of [200, 100, 80, 60, 40, 30, 20, 10, 2]) {
    const bar = new ProgressBar();
    bar.render({ ...st, held: 0 }, 0, cols);
    const line = bar.render(st, 5000, cols);
    t.true(line.length <= Math.max(1, cols - 1), `${cols}: ${line}`);
    if (cols >= 40) t.regex(line, / 50% /, `${cols}: the percentage stays`);
  }
  const wide = new ProgressBar().render(st, 0, 200);
  t.regex(wide, /^a-long-application-name 10\.20\.30 \[#{14}\.{14}\]/);
  const at40 = new ProgressBar().render(st, 0, 40);
  t.false(at40.includes('from peers'), at40);
  const stalled = new ProgressBar().render({ ...st, stalled: { reason: 'no-source', message: 'no source: no peer holds the missing chunks and there is no origin URL', forMs: 6000 } }, 0, 120);
  t.regex(stalled, /stalled: no source/);
});

const tmuxMissing = hasCommand('tmux') || process.env.CI ? undefined : 'tmux is not installed (apt-get install tmux)';
requires(tmuxMissing)('in a real 80- and a 40-column terminal (tmux) the live line stays one line: no wraps, no line per update', async (t) => {
  const exec = promisify(execFile);
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 12 * MiB, bytesPerSec: 3 * MiB });
  const { daemons } = await startSite(t, dir, 1, rel.trusted);
  const sock = `shoal-test-${process.pid}`;
  const tmux = (...a: string[]) => exec('tmux', ['-L', sock, '-f', '/dev/null', ...a], { timeout: 10_000 });
  t.teardown(() => tmux('kill-server').catch(() => {}));
  const widths = [80, 40];
  for (const w of widths) {
    const cmd = `${process.execPath} ${CLI} fetch ${rel.manifestUrl} --api ${daemons[0]!.api} -o ${path.join(dir, `w${w}.bin`)}; echo EXIT=$?; sleep 60`;
    await tmux('new-session', '-d', '-s', `w${w}`, '-x', String(w), '-y', '30', cmd);
  }
  const panes = async (w: number) => ({
    rows: (await tmux('capture-pane', '-p', '-t', `w${w}`)).stdout.split('\n'),
    lines: (await tmux('capture-pane', '-p', '-J', '-t', `w${w}`)).stdout.split('\n'),
  });
  // Mid-transfer and at the end: one progress line, as wide as the terminal allows at most.
  let seenMid = 0;
  await until(async () => {
    for (const w of widths) {
      const { rows } = await panes(w);
      const bars = rows.filter((r) => / \d+%/.test(r));
      if (bars.length === 1 && !/100%/.test(bars[0]!)) seenMid++;
      t.true(bars.length <= 1, `${w} columns, one progress line: ${JSON.stringify(rows.filter(Boolean))}`);
    }
    return (await Promise.all(widths.map(async (w) => (await panes(w)).rows.some((r) => r.startsWith('EXIT='))))).every(Boolean);
  }, 'both fetches finished', 60_000, 200);
  t.true(seenMid > 0, 'the bar was seen mid-transfer');
  for (const w of widths) {
    const { rows, lines } = await panes(w);
    t.true(rows.includes('EXIT=0'), `${w}: ${rows.join('|')}`);
    const bar = lines.filter((l) => / \d+%/.test(l));
    t.is(bar.length, 1, `${w}: ${JSON.stringify(lines)}`);
    t.true(bar[0]!.trimEnd().length <= w - 1, `${w} columns: ${bar[0]}`);
    t.regex(bar[0]!, /100%/);
    // The bar's line did not wrap: it is one row of the raw capture too.
    t.true(rows.map((r) => r.trimEnd()).includes(bar[0]!.trimEnd()), `${w}: the bar wrapped: ${JSON.stringify(rows.filter(Boolean))}`);
  }
});

test('without a terminal a fetch that fails prints its error and nothing else but its id', async (t) => {
  const dir = await tmpDir(t);
  const { daemons } = await startSite(t, dir, 1, []);
  const r = await runShoal(['fetch', 'http://127.0.0.1:9/nothing.json', '--api', daemons[0]!.api, '-o', path.join(dir, 'x.bin')]);
  t.is(r.code, 11);
  const lines = r.stderr.trim().split('\n');
  t.is(lines.length, 2, r.stderr);
  t.regex(lines[0]!, /^fetch [0-9a-f]{16}$/);
  t.regex(lines[1]!, /^shoal: error \[[a-z-]+\]: /);
});

test('every verb answers --help', async (t) => {
  const verbs = [...usage().matchAll(/^ {2}(\w+)\s/gm)].map((m) => m[1]!);
  t.true(verbs.length >= 12, verbs.join(' '));
  for (const v of verbs) {
    const r = await runShoal([v, '--help']);
    t.is(r.code, 0, v);
    t.regex(r.stdout, new RegExp(`shoal ${v}`), v);
  }
});
