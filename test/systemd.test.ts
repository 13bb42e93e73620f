/** Running under systemd: the unit's checks, the unit's directories and readiness, and install.sh. */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ROOT, tmpDir } from './helpers/fixtures.js';
import { verifyUnit } from './helpers/unit.js';
import { hasCommand } from './helpers/requires.js';

const hasAnalyze = hasCommand('systemd-analyze');
const analyzeTest = hasAnalyze ? test : test.skip;
if (!hasAnalyze) console.log('systemd unit checks skipped: systemd-analyze is not installed');

async function install(destdir: string, ...args: string[]) {
  return spawnSync('bash', [path.join(ROOT, 'systemd/install.sh'), ...args], { env: { ...process.env, DESTDIR: destdir }, encoding: 'utf8' });
}

async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of (await fs.readdir(d, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(`${path.relative(dir, p)} ${createHash('sha256').update(await fs.readFile(p)).digest('hex').slice(0, 12)} ${((await fs.stat(p)).mode & 0o777).toString(8)}`);
    }
  };
  await walk(dir);
  return out;
}

analyzeTest('the unit passes systemd-analyze verify and security (exposure ≤ 2.5)', async (t) => {
  const dir = await tmpDir(t);
  t.is((await install(dir)).status, 0);
  const verify = await verifyUnit(path.join(ROOT, 'systemd/shoal.service'), dir);
  t.is(verify.status, 0, verify.stderr);
  const sec = spawnSync('systemd-analyze', ['security', '--offline=yes', '--threshold=25', path.join(ROOT, 'systemd/shoal.service')], { encoding: 'utf8' });
  t.is(sec.status, 0, sec.stdout + sec.stderr);
  const level = Number(/Overall exposure level for shoal\.service: ([\d.]+)/.exec(sec.stdout)?.[1]);
  t.true(level <= 2.5, `exposure ${level}`);
  t.log(`exposure ${level}`);
});

test('started with the unit\'s environment, the daemon uses $STATE_DIRECTORY, $CACHE_DIRECTORY, $RUNTIME_DIRECTORY and says READY=1', async (t) => {
  const dir = await tmpDir(t);
  const [state, cache, runtime] = ['state', 'cache', 'runtime'].map((d) => path.join(dir, d));
  for (const d of [state!, cache!, runtime!]) await fs.mkdir(d);
  // A notify socket like systemd's (Node cannot open unix datagram sockets; python can).
  const notifyPath = path.join(dir, 'notify');
  const listener = spawn('python3', ['-c', `import socket,sys
s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); print('bound', flush=True)
print(s.recv(4096).decode().replace('\\n',' '), flush=True)`, notifyPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => listener.kill('SIGKILL'));
  let got = '';
  listener.stdout!.on('data', (d: Buffer) => { got += d.toString(); });
  while (!got.includes('bound')) await new Promise((r) => setTimeout(r, 20));
  const d = spawn(process.execPath, [path.join(ROOT, 'dist/daemon/shoald.js'), '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--apt-listen', '127.0.0.1:0'], {
    env: { ...process.env, STATE_DIRECTORY: state, CACHE_DIRECTORY: cache, RUNTIME_DIRECTORY: runtime, NOTIFY_SOCKET: notifyPath }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => d.kill('SIGKILL'));
  const exited = new Promise<number | null>((r) => d.once('exit', (c) => r(c)));
  const t0 = Date.now();
  while (!got.includes('READY=1') && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 50));
  t.regex(got, /READY=1/);
  t.truthy(await fs.stat(path.join(state!, 'state.json')), 'peer id and sequences in $STATE_DIRECTORY');
  t.truthy(await fs.stat(path.join(cache!, 'blobs')), 'chunk store in $CACHE_DIRECTORY');
  t.truthy(await fs.stat(path.join(runtime!, 'agent.sock')), 'agent socket in $RUNTIME_DIRECTORY');
  await t.throwsAsync(fs.stat(path.join(cache!, 'state.json')));
  d.kill('SIGTERM');
  t.is(await exited, 0);
});

test('install.sh lays out the release, is idempotent, keeps a changed config, and --uninstall removes it', async (t) => {
  const dir = await tmpDir(t);
  let r = await install(dir);
  t.is(r.status, 0, r.stderr);
  const first = await tree(dir);
  for (const want of ['usr/bin/shoal', 'usr/bin/shoald', 'usr/lib/systemd/system/shoal.service', 'usr/lib/tmpfiles.d/shoal.conf', 'etc/shoal/config.json', 'usr/lib/shoal/dist/daemon/shoald.js', 'usr/lib/shoal/dashboard/index.html', 'usr/lib/shoal/apt-proxy-detect', 'etc/apt/apt.conf.d/80shoal']) {
    t.true(first.some((l) => l.startsWith(`${want} `)), want);
  }
  t.false(first.some((l) => l.includes('node_modules/typescript/') || l.includes('node_modules/ava/') || l.includes('dist/test/')), 'no dev dependencies or tests shipped');
  t.true(first.some((l) => l.startsWith('usr/bin/shoald ') && l.endsWith(' 755')));
  t.false(first.some((l) => l.endsWith('.node') || l.includes('.node ')), 'no native code ships: the release is architecture-independent');
  // The installed release runs on its own (production dependencies only), through the
  // entry points' shebangs: plain node, no V8 flags.
  for (const entry of ['agent-api/shoal.js', 'daemon/shoald.js']) {
    const file = path.join(dir, 'usr/lib/shoal/dist', entry);
    t.is((await fs.readFile(file, 'utf8')).split('\n')[0], '#!/usr/bin/env node', `${entry} shebang`);
    const help = spawnSync(file, ['--help'], { encoding: 'utf8' });
    t.is(help.status, 0, help.stderr);
  }
  t.regex(await fs.readFile(path.join(dir, 'usr/bin/shoald'), 'utf8'), /^exec \/usr\/lib\/shoal\/dist\/daemon\/shoald\.js "\$@"$/m);
  r = await install(dir);
  t.is(r.status, 0);
  t.deepEqual(await tree(dir), first, 'a second install changes nothing');

  await fs.writeFile(path.join(dir, 'etc/shoal/config.json'), '{"siteId":"mine"}\n');
  r = await install(dir);
  t.regex(r.stdout, /kept .*config\.json/);
  t.is(await fs.readFile(path.join(dir, 'etc/shoal/config.json'), 'utf8'), '{"siteId":"mine"}\n');
  r = await install(dir, '--uninstall');
  t.is(r.status, 0);
  const kept = createHash('sha256').update('{"siteId":"mine"}\n').digest('hex').slice(0, 12);
  t.deepEqual(await tree(dir), [`etc/shoal/config.json ${kept} 644`], 'only the changed config remains');
});
