/**
 * `shoal oci configure`: what it writes for containerd, Docker and podman,
 * that the podman drop-in really sends skopeo through the mirror, and that
 * --undo takes back exactly what it wrote (backups restored, later edits kept).
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { CLI, tmpDir } from './helpers/fixtures.js';
import { OCI_TOOLS, buildImage, pushImage, skopeoPull, startRegistry } from './helpers/oci.js';
import { parseMetrics, sum } from './helpers/prometheus.js';
import { requires, hasCommand } from './helpers/requires.js';
import { startShoald } from './helpers/site.js';

function shoal(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

async function setup(t: import('ava').ExecutionContext, extra: Record<string, unknown> = {}) {
  const dir = await tmpDir(t);
  const root = path.join(dir, 'root');
  const config = path.join(dir, 'config.json');
  await fs.writeFile(config, JSON.stringify({ ociListen: '127.0.0.1:7402', ociRegistries: [{ host: 'docker.io', url: 'https://registry-1.docker.io' }, { host: '198.18.0.3:5000', url: 'http://198.18.0.3:5000' }], ...extra }));
  return { dir, root, config };
}

test('containerd: a hosts.toml per registry, the mirror first with a short dial timeout; --undo restores what was there', async (t) => {
  const { root, config } = await setup(t);
  const mine = path.join(root, 'etc/containerd/certs.d/docker.io/hosts.toml');
  await fs.mkdir(path.dirname(mine), { recursive: true });
  await fs.writeFile(mine, 'server = "https://registry-1.docker.io"\n# the operator\'s own\n');
  const r = shoal(['oci', 'configure', 'containerd', '--config', config, '--root', root]);
  t.is(r.code, 0, r.err);
  t.regex(r.out, /wrote +\/etc\/containerd\/certs\.d\/docker\.io\/hosts\.toml/);
  t.regex(r.out, /config_path/, 'says config_path is needed');
  const toml = await fs.readFile(mine, 'utf8');
  t.regex(toml, /^server = "https:\/\/registry-1\.docker\.io"$/m);
  t.regex(toml, /^\[host\."http:\/\/127\.0\.0\.1:7402"\]$/m);
  t.regex(toml, /capabilities = \["pull"\]/);
  t.regex(toml, /dial_timeout = "200ms"/);
  const other = await fs.readFile(path.join(root, 'etc/containerd/certs.d/198.18.0.3:5000/hosts.toml'), 'utf8');
  t.regex(other, /^server = "http:\/\/198\.18\.0\.3:5000"$/m);
  // Run twice: still one backup, of the operator's file.
  t.is(shoal(['oci', 'configure', 'containerd', '--config', config, '--root', root]).code, 0);
  t.regex(await fs.readFile(`${mine}.shoal-backup`, 'utf8'), /the operator's own/);
  const u = shoal(['oci', 'configure', 'containerd', '--undo', '--root', root]);
  t.is(u.code, 0, u.err);
  t.regex(await fs.readFile(mine, 'utf8'), /the operator's own/);
  await t.throwsAsync(fs.stat(`${mine}.shoal-backup`));
  await t.throwsAsync(fs.stat(path.join(root, 'etc/containerd/certs.d/198.18.0.3:5000')), undefined, 'the folder shoal made is gone');
});

test('containerd with ociResolve: resolve is a capability; a hosts.toml edited after configure is kept by --undo', async (t) => {
  const { root, config } = await setup(t, { ociResolve: true });
  t.is(shoal(['oci', 'configure', 'containerd', '--config', config, '--root', root]).code, 0);
  const f = path.join(root, 'etc/containerd/certs.d/docker.io/hosts.toml');
  t.regex(await fs.readFile(f, 'utf8'), /capabilities = \["pull", "resolve"\]/);
  await fs.appendFile(f, '# edited by hand\n');
  const u = shoal(['oci', 'configure', 'containerd', '--undo', '--root', root]);
  t.regex(u.out, /kept .*docker\.io\/hosts\.toml \(changed since shoal wrote it\)/);
  t.regex(await fs.readFile(f, 'utf8'), /edited by hand/);
});

test('docker: the mirror added to registry-mirrors, the rest of daemon.json untouched; --undo takes out only the mirror', async (t) => {
  const { root, config } = await setup(t);
  const f = path.join(root, 'etc/docker/daemon.json');
  await fs.mkdir(path.dirname(f), { recursive: true });
  await fs.writeFile(f, JSON.stringify({ 'log-driver': 'journald', 'registry-mirrors': ['https://mirror.example'] }));
  t.is(shoal(['oci', 'configure', 'docker', '--config', config, '--root', root]).code, 0);
  t.deepEqual(JSON.parse(await fs.readFile(f, 'utf8')), { 'log-driver': 'journald', 'registry-mirrors': ['http://127.0.0.1:7402', 'https://mirror.example'] });
  t.is(shoal(['oci', 'configure', 'docker', '--undo', '--root', root]).code, 0);
  t.deepEqual(JSON.parse(await fs.readFile(f, 'utf8')), { 'log-driver': 'journald', 'registry-mirrors': ['https://mirror.example'] });
  // No daemon.json before: none after.
  await fs.rm(f);
  t.is(shoal(['oci', 'configure', 'docker', '--config', config, '--root', root]).code, 0);
  t.is(shoal(['oci', 'configure', 'docker', '--undo', '--root', root]).code, 0);
  await t.throwsAsync(fs.stat(f));
  // A daemon.json that is not JSON is refused, not overwritten.
  await fs.writeFile(f, '{ nope');
  const bad = shoal(['oci', 'configure', 'docker', '--config', config, '--root', root]);
  t.is(bad.code, 3);
  t.regex(bad.err, /\[malformed\].*daemon\.json is not JSON/);
  t.is(await fs.readFile(f, 'utf8'), '{ nope');
});

test('bad arguments are usage errors', (t) => {
  t.is(shoal(['oci', 'configure', 'kubelet']).code, 2);
  t.is(shoal(['oci', 'push']).code, 2);
  t.regex(shoal(['oci', '--help']).out, /shoal oci configure containerd\|docker\|podman/);
});

const missing = OCI_TOOLS.find((b) => !hasCommand(b));
requires(missing ? `${missing} is not installed` : undefined)('podman/skopeo: the registries.conf.d drop-in sends a real skopeo pull through the mirror; --undo removes it', async (t) => {
  const { dir, root } = await setup(t);
  const reg = await startRegistry(path.join(dir, 'registry'), { listen: '127.0.0.1' });
  t.teardown(() => reg.stop());
  const img = await buildImage(path.join(dir, 'img'), 'v1', [2 << 20]);
  await pushImage(img, reg.host, 'app');
  const d = await startShoald({ name: 'd0', dir: path.join(dir, 'd0'), peer: '127.0.0.1:0', staticPeers: [], trustedKeys: [], config: { ociRegistries: [{ host: reg.host, url: reg.url }], ociResolve: true } });
  t.teardown(() => d.kill('SIGKILL'));
  const config = path.join(dir, 'podman-config.json');
  await fs.writeFile(config, JSON.stringify({ ociListen: `127.0.0.1:${d.ociPort}`, ociRegistries: [{ host: reg.host, url: reg.url }], ociResolve: true }));
  const r = shoal(['oci', 'configure', 'podman', '--config', config, '--root', root]);
  t.is(r.code, 0, r.err);
  const dropIn = path.join(root, 'etc/containers/registries.conf.d/50-shoal.conf');
  const p = await skopeoPull(`${reg.host}/app:v1`, path.join(dir, 'out'), dropIn);
  t.is(p.digest, img.digest);
  const m = parseMetrics(await (await fetch(`${d.api}/metrics`)).text());
  t.true(sum(m, 'shoal_download_bytes_total', { kind: 'oci' }) >= 2 << 20, 'the pull went through the mirror');
  t.is(shoal(['oci', 'configure', 'podman', '--undo', '--root', root]).code, 0);
  await t.throwsAsync(fs.stat(dropIn));
  await t.throwsAsync(fs.stat(path.join(root, 'etc/shoal/oci-configured-podman.json')));
});

/** A throwaway containerd (content store only: no CRI, no snapshotters that need a kernel feature) on its own socket. */
async function startContainerd(t: import('ava').ExecutionContext, dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const sock = path.join(dir, 'containerd.sock');
  const config = path.join(dir, 'containerd.toml');
  await fs.writeFile(config, [
    'version = 2', `root = "${dir}/root"`, `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
    '[grpc]', `  address = "${sock}"`, '[ttrpc]', `  address = "${sock}.ttrpc"`, '[debug]', '  address = ""', '[metrics]', '  address = ""', '',
  ].join('\n'));
  const { spawn } = await import('node:child_process');
  const proc = spawn('containerd', ['--config', config], { stdio: 'ignore' });
  t.teardown(() => { proc.kill('SIGKILL'); });
  for (let i = 0; spawnSync('ctr', ['-a', sock, 'version']).status !== 0; i++) {
    if (i > 100) throw new Error('containerd did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  return sock;
}

const noContainerd = process.getuid?.() !== 0 ? 'containerd needs root' : ['containerd', 'ctr', ...OCI_TOOLS].find((b) => !hasCommand(b));
requires(noContainerd ? `${noContainerd}${noContainerd.includes(' ') ? '' : ' is not installed'}` : undefined)('containerd: ctr --hosts-dir with the hosts.toml shoal wrote fetches the image through the mirror, tag resolved at the registry', async (t) => {
  const dir = await tmpDir(t);
  const reg = await startRegistry(path.join(dir, 'registry'), { listen: '127.0.0.1', token: true });
  t.teardown(() => reg.stop());
  const img = await buildImage(path.join(dir, 'img'), 'v1', [3 << 20, 100_000]);
  await pushImage(img, reg.host, 'app');
  const d = await startShoald({ name: 'd0', dir: path.join(dir, 'd0'), peer: '127.0.0.1:0', staticPeers: [], trustedKeys: [], config: { ociRegistries: [{ host: reg.host, url: reg.url }] } });
  t.teardown(() => d.kill('SIGKILL'));
  const config = path.join(dir, 'shoal.json');
  await fs.writeFile(config, JSON.stringify({ ociListen: `127.0.0.1:${d.ociPort}`, ociRegistries: [{ host: reg.host, url: reg.url }] }));
  const root = path.join(dir, 'root');
  t.is(shoal(['oci', 'configure', 'containerd', '--config', config, '--root', root]).code, 0);
  const sock = await startContainerd(t, path.join(dir, 'containerd'));
  // Not spawnSync: the registry's relay and token server live in this process.
  const { execFile } = await import('node:child_process');
  const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
    execFile('ctr', ['-a', sock, 'content', 'fetch', '--hosts-dir', path.join(root, 'etc/containerd/certs.d'), `${reg.host}/app:v1`], { timeout: 60_000 }, (e, _out, err) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, err }));
  });
  t.is(r.code, 0, `${r.err.slice(-3000)}\n${d.logs.slice(-10).join('\n')}`);
  const m = parseMetrics(await (await fetch(`${d.api}/metrics`)).text());
  t.true(sum(m, 'shoal_download_bytes_total', { kind: 'oci' }) >= 3 << 20, 'the layers came through the mirror');
  t.is(sum(m, 'shoal_unshared_bytes_total', { kind: 'oci' }), 0, 'the tag was resolved at the registry, not by the mirror');
  const info = spawnSync('ctr', ['-a', sock, 'content', 'ls'], { encoding: 'utf8' });
  for (const l of img.layers) t.true(info.stdout.includes(l.digest), `${l.digest} in containerd's store`);
});
