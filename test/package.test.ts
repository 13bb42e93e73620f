/** `npm run package`: the .deb installs into a throwaway root with dpkg, its unit verifies
 * against the installed binary, the installed daemon starts, and remove/purge leave what they should. */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT, tmpDir } from './helpers/fixtures.js';
import { verifyUnit } from './helpers/unit.js';
import { hasCommand } from './helpers/requires.js';

const missing = ['dpkg', 'dpkg-deb'].find((c) => !hasCommand(c));
const pkgTest = missing ? test.skip : test;
if (missing) console.log(`package tests skipped: ${missing} is not installed`);

let built: Promise<string> | undefined;
let debDir: string | undefined;
test.after.always(async () => { if (debDir) await fs.rm(debDir, { recursive: true, force: true }); });
/** One .deb for the file's tests, built by the same script `npm run package` runs. */
function deb(): Promise<string> {
  built ??= (async () => {
    const out = debDir = await fs.mkdtemp(path.join(os.tmpdir(), 'shoal-deb-'));
    const r = spawnSync('bash', [path.join(ROOT, 'systemd/make-deb.sh'), out], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`make-deb failed: ${r.stderr}`);
    return r.stdout.trim();
  })();
  return built;
}

/** An empty dpkg database with one nodejs of the given version "installed". */
async function root(t: { teardown(fn: () => unknown): void }, nodeVersion: string): Promise<string> {
  const r = await tmpDir(t, 'shoal-root-');
  for (const d of ['info', 'updates', 'triggers']) await fs.mkdir(path.join(r, 'var/lib/dpkg', d), { recursive: true });
  await fs.writeFile(path.join(r, 'var/lib/dpkg/status'), `Package: nodejs\nStatus: install ok installed\nPriority: optional\nSection: web\nMaintainer: test\nArchitecture: all\nVersion: ${nodeVersion}\nDescription: stand-in for the test\n\n`);
  await fs.writeFile(path.join(r, 'var/lib/dpkg/info/nodejs.list'), '');
  await fs.writeFile(path.join(r, 'var/lib/dpkg/available'), '');
  return r;
}

function dpkg(r: string, ...args: string[]) {
  return spawnSync('dpkg', [`--root=${r}`, '--force-script-chrootless', '--force-not-root', '--log=/dev/null', ...args], { encoding: 'utf8' });
}

async function files(dir: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (d: string) => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = path.relative(dir, p);
      if (rel.startsWith('var/lib/dpkg')) continue;
      out.set(rel, (await fs.lstat(p)).mode & 0o777);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out;
}

pkgTest('the .deb is architecture-independent, depends on nodejs >= 20.19 and has only production code', async (t) => {
  const file = await deb();
  t.regex(path.basename(file), /^shoal_[\d.]+_all\.deb$/);
  const info = spawnSync('dpkg-deb', ['--field', file, 'Architecture', 'Depends'], { encoding: 'utf8' });
  t.regex(info.stdout, /Architecture: all/);
  t.regex(info.stdout, /Depends: nodejs \(>= 20\.19\)/);
  const list = spawnSync('dpkg-deb', ['--contents', file], { encoding: 'utf8', maxBuffer: 64 << 20 }).stdout;
  t.false(/\.node$/m.test(list), 'no native addon');
  t.false(/node_modules\/(typescript|ava|playwright[^/]*)\//.test(list), 'no dev dependencies');
  t.false(/dist\/test\//.test(list), 'no tests');
  t.false(/etc\/credstore/.test(list), 'the credential is made by postinst, not shipped');
  const conffiles = spawnSync('sh', ['-c', `dpkg-deb --ctrl-tarfile '${file}' | tar -xO ./conffiles`], { encoding: 'utf8' }).stdout;
  t.deepEqual(conffiles.trim().split('\n'), ['/etc/shoal/config.json', '/etc/apt/apt.conf.d/80shoal']);
  t.log(`${path.basename(file)}: ${((await fs.stat(file)).size / 1e6).toFixed(1)} MB`);
});

pkgTest('dpkg refuses the package next to a nodejs older than 20.19', async (t) => {
  const r = await root(t, '18.19.1+dfsg-6');
  const res = dpkg(r, '-i', await deb());
  t.not(res.status, 0);
  t.regex(res.stderr, /depends on nodejs \(>= 20\.19\)/);
  // dpkg leaves it unpacked but never configured: postinst did not run, so no service setup and no credential.
  t.notRegex(dpkg(r, '-s', 'shoal').stdout, /Status: install ok installed/);
  t.false((await files(r)).has('etc/credstore/shoal.site-secret'));
});

pkgTest('installed into a throwaway root: files and modes, the unit verifies, the installed daemon starts; remove keeps the config, purge leaves nothing', async (t) => {
  const r = await root(t, '22.12.0+dfsg-1');
  const res = dpkg(r, '-i', await deb());
  t.is(res.status, 0, res.stderr);
  const got = await files(r);
  const want: Record<string, number> = {
    'usr/bin/shoal': 0o755, 'usr/bin/shoald': 0o755, 'usr/lib/shoal/dist/daemon/shoald.js': 0o755, 'usr/lib/shoal/dist/agent-api/shoal.js': 0o755,
    'usr/lib/shoal/apt-proxy-detect': 0o755, 'usr/lib/systemd/system/shoal.service': 0o644, 'usr/lib/tmpfiles.d/shoal.conf': 0o644,
    'etc/shoal/config.json': 0o644, 'etc/apt/apt.conf.d/80shoal': 0o644, 'usr/share/doc/shoal/README.md': 0o644,
    'etc/credstore': 0o700, 'etc/credstore/shoal.site-secret': 0o600,
  };
  for (const [f, mode] of Object.entries(want)) t.is(got.get(f)?.toString(8), mode.toString(8), f);
  t.is((await fs.stat(path.join(r, 'etc/credstore/shoal.site-secret'))).size, 0, 'an empty credential: an open site until the secret is put there');
  const status = dpkg(r, '-s', 'shoal');
  t.regex(status.stdout, /Status: install ok installed/);

  // The installed unit verifies against the installed binary (ExecStart under the root).
  if (hasCommand('systemd-analyze')) {
    const v = await verifyUnit(path.join(r, 'usr/lib/systemd/system/shoal.service'), r);
    t.is(v.status, 0, v.stderr);
  } else t.log('systemd-analyze is not installed: unit not verified');

  // The installed release runs on its own: production dependencies only, plain node.
  const work = await tmpDir(t);
  const d = spawn(process.execPath, [path.join(r, 'usr/lib/shoal/dist/daemon/shoald.js'), '--cache-dir', work, '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--apt-listen', '127.0.0.1:0', '--discovery', 'static'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => d.kill('SIGKILL'));
  let log = '';
  d.stdout!.on('data', (b: Buffer) => { log += b.toString(); });
  d.stderr!.on('data', (b: Buffer) => { log += b.toString(); });
  const exited = new Promise<number | null>((res) => d.once('exit', (c) => res(c)));
  const t0 = Date.now();
  while (!log.includes('shoald ready') && d.exitCode === null && Date.now() - t0 < 15_000) await new Promise((res) => setTimeout(res, 50));
  t.true(log.includes('shoald ready'), log);
  d.kill('SIGTERM');
  t.is(await exited, 0);

  // A changed config survives remove (a conffile) and goes with purge.
  await fs.writeFile(path.join(r, 'etc/shoal/config.json'), '{"siteId":"mine"}\n');
  t.is(dpkg(r, '-r', 'shoal').status, 0);
  let left = [...(await files(r)).keys()].filter((f) => !f.startsWith('var'));
  t.deepEqual(left.filter((f) => f.startsWith('usr/lib/shoal') || f.startsWith('usr/bin/')), [], 'the release is gone');
  t.true(left.includes('etc/shoal/config.json'));
  t.is(await fs.readFile(path.join(r, 'etc/shoal/config.json'), 'utf8'), '{"siteId":"mine"}\n');
  t.is(dpkg(r, '-P', 'shoal').status, 0);
  left = [...(await files(r)).keys()].filter((f) => !f.startsWith('var'));
  // dpkg leaves the empty directories it did not make itself (usr, etc, …) only.
  const nonDirs = [];
  for (const f of left) if (!(await fs.lstat(path.join(r, f))).isDirectory()) nonDirs.push(f);
  t.deepEqual(nonDirs, [], 'purge leaves no file');
  t.false(left.includes('etc/shoal') || left.includes('etc/credstore') || left.includes('usr/lib/shoal'), left.join(' '));
});
