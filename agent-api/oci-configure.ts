/**
 * `shoal oci configure containerd|docker|podman [--undo]`: points a container
 * client at the local OCI mirror without hand edits, and takes back exactly
 * what it wrote. Each write is recorded (path, the SHA-256 of what was written,
 * the backup of what was there); --undo removes a file only while it still
 * holds our bytes, and puts the backup back. All paths live under `root` (/ by
 * default), so the same code is tested in a scratch folder.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ShoalError, fromSystemError } from '../daemon/errors.js';
import { writeFileAtomic } from '../manifests/atomic-file.js';
import type { Registry } from '../daemon/oci/reference.js';
import { registryComponent } from '../daemon/oci/reference.js';

export const CLIENTS = ['containerd', 'docker', 'podman'] as const;
export type Client = (typeof CLIENTS)[number];

export interface MirrorSetup {
  /** host:port of the mirror as clients on this machine reach it. */
  mirror: string;
  registries: readonly Registry[];
  resolve: boolean;
}

interface Written { path: string; sha256: string; backup?: string; createdDir?: string }
interface Record_ { client: Client; files: Written[]; dockerMirror?: string }

const MARK = '# Written by `shoal oci configure`; `shoal oci configure CLIENT --undo` removes it.';
const MAX_DAEMON_JSON = 1 << 20;
const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');
const under = (root: string, p: string) => path.join(root, p);
const recordFile = (root: string, client: Client) => under(root, `etc/shoal/oci-configured-${client}.json`);

async function readIf(file: string): Promise<Buffer | undefined> {
  return fs.readFile(file).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw fromSystemError(e, file);
  });
}

/** containerd's hosts.toml for one registry: the mirror first, the registry itself as the fallback. */
export function hostsToml(r: Registry, s: MirrorSetup): string {
  const caps = s.resolve ? '["pull", "resolve"]' : '["pull"]';
  return `${MARK}\nserver = "${r.url}"\n\n[host."http://${s.mirror}"]\n  capabilities = ${caps}\n  # A stopped shoald costs one refused connection, not a wait.\n  dial_timeout = "200ms"\n`;
}

/** A registries.conf.d drop-in: every registry pulled through the mirror first. */
export function registriesDropIn(s: MirrorSetup): string {
  const blocks = s.registries.map((r) => [
    '[[registry]]', `prefix = "${r.host}"`, `location = "${r.host}"`, ...(r.url.startsWith('http:') ? ['insecure = true'] : []),
    '[[registry.mirror]]', `location = "${s.mirror}/${registryComponent(r.host)}"`, 'insecure = true',
    // Tags are answered by the mirror only with ociResolve on; else they go to the registry at once.
    ...(s.resolve ? [] : ['pull-from-mirror = "digest-only"']), '',
  ].join('\n'));
  return `${MARK}\n\n${blocks.join('\n')}`;
}

async function writeOwned(root: string, rel: string, content: string, rec: Record_) {
  const file = under(root, rel);
  const dir = path.dirname(file);
  const dirExisted = await fs.stat(dir).then(() => true, () => false);
  await fs.mkdir(dir, { recursive: true });
  const old = await readIf(file);
  const prior = rec.files.find((w) => w.path === rel);
  let backup = prior?.backup;
  // Ours already (configure run twice): rewritten in place, the first backup kept.
  if (old && !(prior && sha(old) === prior.sha256)) {
    backup = `${rel}.shoal-backup`;
    await writeFileAtomic(under(root, backup), old);
  }
  await writeFileAtomic(file, content);
  rec.files = rec.files.filter((w) => w.path !== rel);
  rec.files.push({ path: rel, sha256: sha(content), ...(backup ? { backup } : {}), ...(prior?.createdDir ? { createdDir: prior.createdDir } : !dirExisted ? { createdDir: path.dirname(rel) } : {}) });
}

async function readRecord(root: string, client: Client): Promise<Record_> {
  const raw = await readIf(recordFile(root, client));
  if (!raw) return { client, files: [] };
  try {
    const j = JSON.parse(raw.toString('utf8')) as Record_;
    if (!Array.isArray(j.files)) throw new Error('no files list');
    return j;
  } catch (e) {
    throw new ShoalError('malformed', `${recordFile(root, client)}: ${(e as Error).message}`);
  }
}

export interface ConfigureResult { wrote: string[]; removed: string[]; restored: string[]; kept: string[]; notes: string[] }

export async function configure(client: Client, s: MirrorSetup, root = '/'): Promise<ConfigureResult> {
  const rec = await readRecord(root, client);
  const out: ConfigureResult = { wrote: [], removed: [], restored: [], kept: [], notes: [] };
  if (client === 'containerd') {
    for (const r of s.registries) {
      const rel = `etc/containerd/certs.d/${r.host}/hosts.toml`;
      await writeOwned(root, rel, hostsToml(r, s), rec);
      out.wrote.push(`/${rel}`);
    }
    const cfg = (await readIf(under(root, 'etc/containerd/config.toml')))?.toString('utf8') ?? '';
    if (!/config_path\s*=\s*"[^"]*certs\.d"/.test(cfg)) {
      out.notes.push('containerd reads hosts.toml only with config_path set: in /etc/containerd/config.toml, under [plugins."io.containerd.grpc.v1.cri".registry] (containerd 1.x) or [plugins."io.containerd.cri.v1.images".registry] (2.x), set config_path = "/etc/containerd/certs.d", then restart containerd once.');
    }
    out.notes.push("containerd 2.1+ pulls CRI images through its transfer service by default (use_local_image_pull = false), which has been reported to ignore hosts.toml mirrors: set use_local_image_pull = true under [plugins.'io.containerd.cri.v1.images'] (docs/oci.md).");
  } else if (client === 'docker') {
    const rel = 'etc/docker/daemon.json';
    const file = under(root, rel);
    const raw = await readIf(file);
    if (raw && raw.length > MAX_DAEMON_JSON) throw new ShoalError('too-large', `${file} is larger than ${MAX_DAEMON_JSON} bytes`);
    let j: Record<string, unknown> = {};
    if (raw && raw.toString('utf8').trim()) {
      try {
        j = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
      } catch (e) {
        throw new ShoalError('malformed', `${file} is not JSON: ${(e as Error).message}`);
      }
      if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new ShoalError('malformed', `${file} must hold a JSON object`);
    }
    const url = `http://${s.mirror}`;
    const mirrors = Array.isArray(j['registry-mirrors']) ? (j['registry-mirrors'] as unknown[]).filter((m) => typeof m === 'string') as string[] : [];
    if (!mirrors.includes(url)) {
      if (raw) await writeFileAtomic(`${file}.shoal-backup`, raw);
      j['registry-mirrors'] = [url, ...mirrors];
      await fs.mkdir(path.dirname(file), { recursive: true });
      await writeFileAtomic(file, `${JSON.stringify(j, null, 2)}\n`);
      rec.dockerMirror = url;
      out.wrote.push(`/${rel}`);
    } else out.kept.push(`/${rel} (already lists ${url})`);
    out.notes.push('Docker sends only Docker Hub pulls to registry mirrors; reload it (systemctl reload docker) to pick this up.');
  } else {
    const rel = 'etc/containers/registries.conf.d/50-shoal.conf';
    await writeOwned(root, rel, registriesDropIn(s), rec);
    out.wrote.push(`/${rel}`);
    if (!s.resolve) out.notes.push('With ociResolve off, podman and skopeo pull by tag straight from the registry (pull-from-mirror = "digest-only"); turn ociResolve on to share tag pulls too.');
  }
  await fs.mkdir(path.dirname(recordFile(root, client)), { recursive: true });
  await writeFileAtomic(recordFile(root, client), JSON.stringify(rec, null, 2));
  return out;
}

export async function undo(client: Client, root = '/'): Promise<ConfigureResult> {
  const rec = await readRecord(root, client);
  const out: ConfigureResult = { wrote: [], removed: [], restored: [], kept: [], notes: [] };
  for (const w of rec.files) {
    const file = under(root, w.path);
    const now = await readIf(file);
    if (now && sha(now) !== w.sha256) {
      out.kept.push(`/${w.path} (changed since shoal wrote it)`);
      continue;
    }
    await fs.rm(file, { force: true });
    out.removed.push(`/${w.path}`);
    if (w.backup) {
      const b = await readIf(under(root, w.backup));
      if (b) {
        await writeFileAtomic(file, b);
        await fs.rm(under(root, w.backup), { force: true });
        out.restored.push(`/${w.path}`);
      }
    } else if (w.createdDir) await fs.rmdir(under(root, w.createdDir)).catch(() => {});
  }
  if (client === 'docker' && rec.dockerMirror) {
    const file = under(root, 'etc/docker/daemon.json');
    const raw = await readIf(file);
    if (raw) {
      try {
        const j = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
        const mirrors = Array.isArray(j['registry-mirrors']) ? (j['registry-mirrors'] as unknown[]) : [];
        const rest = mirrors.filter((m) => m !== rec.dockerMirror);
        if (rest.length !== mirrors.length) {
          if (rest.length) j['registry-mirrors'] = rest;
          else delete j['registry-mirrors'];
          // A daemon.json that held only our mirror goes away as it came.
          const backup = await readIf(`${file}.shoal-backup`);
          if (!Object.keys(j).length && !backup) await fs.rm(file, { force: true });
          else await writeFileAtomic(file, `${JSON.stringify(j, null, 2)}\n`);
          await fs.rm(`${file}.shoal-backup`, { force: true });
          out.removed.push(`/etc/docker/daemon.json: registry-mirrors ${rec.dockerMirror}`);
        }
      } catch {
        out.kept.push('/etc/docker/daemon.json (no longer JSON: left alone)');
      }
    }
  }
  await fs.rm(recordFile(root, client), { force: true });
  return out;
}
