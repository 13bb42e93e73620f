/** The README's quick start on one machine, pasted as a new user would: its blocks run
 * with bash from an empty folder, against this checkout's build. */
import test from 'ava';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ROOT, tmpDir } from './helpers/fixtures.js';

/** The quick start's fixed ports must be free, or the walkthrough cannot work as written. */
function free(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

test('the one-machine quick start works as written: two daemons fetch the release, the origin serves it once', async (t) => {
  const readme = await fs.readFile(path.join(ROOT, 'README.md'), 'utf8');
  const links = /```sh\n(mkdir -p bin [^]*?)```/.exec(readme)?.[1];
  const block = /<!-- quickstart:local[^>]*-->\n```sh\n([^]*?)```/.exec(readme)?.[1];
  t.truthy(links, 'the PATH block');
  t.truthy(block, 'the marked quick-start block');
  for (const port of [8000, 17400, 17401, 17410, 17411]) t.true(await free(port), `port ${port} is in use`);
  const dir = await tmpDir(t);
  // The checkout is "~/shoal" in the README; here it is this one. Then the block, then the stop it names.
  const script = `set -e\n${links!.replaceAll('~/shoal', ROOT)}${block}kill $(jobs -p)\nwait\n`;
  const child = spawn('bash', ['-c', script], { cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ } });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
  const timer = setTimeout(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 120_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(timer);
  t.is(code, 0, out);
  const release = await fs.readFile(path.join(dir, 'release/app.bin'));
  for (const f of ['app-a.bin', 'app-b.bin']) t.true(release.equals(await fs.readFile(path.join(dir, f))), f);
  t.regex(out, /2 of 2 members answered/);
  // Site-wide: 128 MiB delivered, 64 MiB of it from the origin, the rest from the peer.
  t.regex(out, /native\s+128\.0 MiB\s+origin\s+64\.0 MiB\s+peers\s+64\.0 MiB/, out);
  const origin = await fs.readFile(path.join(dir, 'origin.log'), 'utf8');
  t.regex(origin, /GET \/app\/1\.0\.0\.json/);
  t.regex(origin, /GET \/app\/1\.0\.0\/app\.bin/);
  t.log(out.split('\n').filter((l) => /verified|site savings|native/.test(l)).join('\n'));
});
