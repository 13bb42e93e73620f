/** What people see: a live progress bar on a terminal, plain lines elsewhere, --help on every verb. */
import test from 'ava';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { ProgressBar } from '../agent-api/agent-verbs.js';
import type { FetchStatus } from '../agent-api/client.js';
import { usage } from '../agent-api/cli.js';
import { originWithRelease } from './helpers/release.js';
import { startSite } from './helpers/site.js';
import { CLI, runShoal, tmpDir } from './helpers/fixtures.js';

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
  t.regex(tty, /\r.*\[[#.]{28}\]\s+\d+% .* MiB\/s ETA/, 'a redrawn bar with rate and ETA');
  t.regex(tty, /app 1\.0\.0: 1 file\(s\) verified/);
  // The second time it is cached: the plain (non-TTY) output is line per update, no carriage returns.
  const plain = await runShoal(['fetch', rel.manifestUrl, '--api', daemons[0]!.api, '-o', path.join(dir, 'plain.bin')]);
  t.is(plain.code, 0);
  t.false(plain.stderr.includes('\r'));
  t.regex(plain.stderr, /^done 100\.0% 12\.0 MiB\/12\.0 MiB/m);
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
