/**
 * A real OCI registry for the tests (Debian's docker-registry, the CNCF
 * distribution registry), optionally behind the distribution token flow with
 * a token server of the test's own (RS256 JWTs whose x5c certificate the
 * registry trusts); images written as OCI layouts and pushed with skopeo;
 * pulls with skopeo through a registries.conf mirror entry.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, createSign, randomBytes } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeFile } from '../../bench/lib.js';

const run = promisify(execFile);

export const OCI_TOOLS = ['skopeo', 'docker-registry', 'openssl'];

async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export interface RunningRegistry {
  /** host:port clients name the registry by. */
  host: string;
  url: string;
  /** Bytes the registry (or its counting relay) sent to clients so far. */
  egress(): number;
  /** Token requests answered (token flow only). */
  tokens(): number;
  stop(): Promise<void>;
}

/**
 * `listen`: the address clients use (a counting relay there forwards to the registry on
 * loopback, so its egress is the registry's bytes on the wire). `token`: the registry wants
 * bearer tokens, from a token server that gives any scope anonymously.
 */
export async function startRegistry(dir: string, opts: { listen?: string; token?: boolean } = {}): Promise<RunningRegistry> {
  await fs.mkdir(dir, { recursive: true });
  const port = await freePort();
  let tokenServer: http.Server | undefined;
  let tokens = 0;
  let auth = '';
  if (opts.token) {
    const key = path.join(dir, 'token.key');
    const cert = path.join(dir, 'token.crt');
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=shoal test token issuer']);
    const der = (await fs.readFile(cert, 'utf8')).replace(/-----[^-]+-----|\s/g, '');
    const pem = await fs.readFile(key, 'utf8');
    // Where clients reach it: the realm is the token server's address as the clients see it.
    const thost = opts.listen ?? '127.0.0.1';
    const tport = await freePort(thost);
    tokenServer = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      const access = u.searchParams.getAll('scope').map((s) => {
        const [type, name, actions] = s.split(':');
        return { type, name, actions: (actions ?? '').split(',').filter(Boolean) };
      });
      const now = Math.floor(Date.now() / 1000);
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const head = `${b64({ alg: 'RS256', typ: 'JWT', x5c: [der] })}.${b64({ iss: 'shoal-test', sub: '', aud: u.searchParams.get('service'), exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access })}`;
      const sig = createSign('RSA-SHA256').update(head).sign(pem).toString('base64url');
      tokens++;
      const body = JSON.stringify({ token: `${head}.${sig}`, expires_in: 300 });
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    });
    await new Promise<void>((r) => tokenServer!.listen(tport, thost, () => r()));
    auth = `auth:\n  token:\n    realm: http://${thost}:${tport}/token\n    service: shoal-test-registry\n    issuer: shoal-test\n    rootcertbundle: ${cert}\n`;
  }
  const config = path.join(dir, 'config.yml');
  await fs.writeFile(config, `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(dir, 'data')}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${auth}`);
  const proc: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-4000); });
  const exited = new Promise((r) => proc.once('exit', r));
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((r) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); r(true); });
      c.on('error', () => r(false));
    });
    if (up) break;
    if (i > 100 || proc.exitCode !== null) throw new Error(`docker-registry did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  let egress = 0;
  let relay: net.Server | undefined;
  let host = `127.0.0.1:${port}`;
  if (opts.listen) {
    const rport = await freePort(opts.listen);
    const socks = new Set<net.Socket>();
    relay = net.createServer((c) => {
      const up = net.connect(port, '127.0.0.1');
      socks.add(c).add(up);
      up.on('data', (b: Buffer) => { egress += b.length; });
      c.pipe(up).pipe(c);
      // The registry's side closing ends the client's side once its queued bytes are sent
      // (through the shaped link they wait long after the registry wrote them).
      up.on('error', () => c.destroy()).on('close', () => socks.delete(up));
      c.on('error', () => up.destroy()).on('close', () => { up.destroy(); socks.delete(c); });
    });
    (relay as net.Server & { socks?: Set<net.Socket> }).socks = socks;
    await new Promise<void>((r) => relay!.listen(rport, opts.listen, () => r()));
    host = `${opts.listen}:${rport}`;
  }
  return {
    host, url: `http://${host}`, egress: () => egress, tokens: () => tokens,
    async stop() {
      if (relay) {
        for (const s of (relay as net.Server & { socks: Set<net.Socket> }).socks) s.destroy();
        await new Promise((r) => relay!.close(r));
      }
      if (tokenServer) { tokenServer.closeAllConnections(); await new Promise((r) => tokenServer!.close(r)); }
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

export interface OciImage {
  layout: string;
  tag: string;
  /** The manifest's digest, `sha256:…`. */
  digest: string;
  /** Manifest + config + layers, in bytes. */
  size: number;
  layers: Array<{ digest: string; size: number }>;
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(file)) h.update(b as Buffer);
  return h.digest('hex');
}

/**
 * Writes an OCI image layout holding one image: gzip'ed tar layers of a random file
 * each (sizes in bytes), a config naming their diff_ids, and the manifest under `tag`.
 */
export async function buildImage(layout: string, tag: string, layerBytes: number[]): Promise<OciImage> {
  const blobs = path.join(layout, 'blobs/sha256');
  await fs.mkdir(blobs, { recursive: true });
  const layers: OciImage['layers'] = [];
  const diffIds: string[] = [];
  for (const [i, bytes] of layerBytes.entries()) {
    const work = path.join(layout, `..`, `${path.basename(layout)}-layer${i}`);
    await fs.rm(work, { recursive: true, force: true });
    await fs.mkdir(work, { recursive: true });
    await makeFile(path.join(work, `payload-${i}.bin`), bytes);
    const tarFile = path.join(layout, `layer${i}.tar`);
    await run('tar', ['-C', work, '--owner=0', '--group=0', '--mtime=@0', '-cf', tarFile, '.']);
    diffIds.push(`sha256:${await sha256File(tarFile)}`);
    // Compressed, as registries hold layers (gzip -1: the payload is random and does not shrink).
    await run('gzip', ['-1', '-n', tarFile]);
    await fs.rename(`${tarFile}.gz`, tarFile);
    await fs.rm(work, { recursive: true, force: true });
    const hex = await sha256File(tarFile);
    await fs.rename(tarFile, path.join(blobs, hex));
    layers.push({ digest: `sha256:${hex}`, size: (await fs.stat(path.join(blobs, hex))).size });
  }
  const put = async (obj: unknown) => {
    const body = Buffer.from(JSON.stringify(obj));
    const hex = createHash('sha256').update(body).digest('hex');
    await fs.writeFile(path.join(blobs, hex), body);
    return { digest: `sha256:${hex}`, size: body.length };
  };
  const config = await put({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds }, history: layers.map(() => ({ created_by: 'shoal test' })) });
  const manifest = await put({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l })),
  });
  await fs.writeFile(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await fs.writeFile(path.join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
  return { layout, tag, digest: manifest.digest, size: manifest.size + config.size + layers.reduce((a, l) => a + l.size, 0), layers };
}

/** Our own trust policy (accept anything: the test checks digests itself), so the machine's containers-common is not needed. */
let policyFile: Promise<string> | undefined;
function policy(): Promise<string> {
  // Written once per process (pulls start at once and must never read it half-written).
  return (policyFile ??= (async () => {
    const file = path.join(os.tmpdir(), `shoal-test-skopeo-policy-${process.pid}.json`);
    await fs.writeFile(file, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    return file;
  })());
}

/** skopeo copy, as is (digests kept), from the layout into the registry as repo:tag. */
export async function pushImage(image: OciImage, registryHost: string, repo: string) {
  await run('skopeo', ['--policy', await policy(), 'copy', '--quiet', '--preserve-digests', '--dest-tls-verify=false', `oci:${image.layout}:${image.tag}`, `docker://${registryHost}/${repo}:${image.tag}`]);
}

/** A registries.conf that sends pulls of `registryHost` to a shoal mirror first (`mirror` host:port, or none). */
export async function writeRegistriesConf(file: string, registryHost: string, mirror?: string) {
  const component = registryHost.toLowerCase().replace(/:/g, '-');
  await fs.writeFile(file, [
    '[[registry]]', `prefix = "${registryHost}"`, `location = "${registryHost}"`, 'insecure = true',
    ...(mirror ? ['[[registry.mirror]]', `location = "${mirror}/${component}"`, 'insecure = true'] : []), '',
  ].join('\n'));
}

/**
 * skopeo copy of `ref` (docker://…) into an OCI layout at `out`, with `registriesConf`
 * (an oci: destination, as a runtime's store: skopeo copies its layers in parallel; into dir: one at a time).
 * Resolves with the digest of the manifest pulled and the time taken.
 */
export async function skopeoPull(ref: string, out: string, registriesConf: string, opts: { netns?: string; timeoutMs?: number } = {}): Promise<{ digest: string; ms: number }> {
  await fs.rm(out, { recursive: true, force: true });
  // --registries-conf (a global flag skopeo does not list in --help): this skopeo ignores CONTAINERS_REGISTRIES_CONF.
  const args = ['--registries-conf', registriesConf, '--policy', await policy(), 'copy', '--quiet', '--retry-times', '0', '--preserve-digests', '--src-tls-verify=false', `docker://${ref}`, `oci:${out}:pulled`];
  const cmd = opts.netns ? ['ip', 'netns', 'exec', opts.netns, 'skopeo', ...args] : ['skopeo', ...args];
  const t0 = performance.now();
  await run(cmd[0]!, cmd.slice(1), {
    env: { ...process.env, TMPDIR: path.dirname(out) },
    timeout: opts.timeoutMs ?? 180_000, maxBuffer: 1 << 20,
  });
  const ms = performance.now() - t0;
  const index = JSON.parse(await fs.readFile(path.join(out, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const digest = index.manifests[0]!.digest;
  // The layout names the manifest by its digest: check the bytes say so.
  if (`sha256:${await sha256File(pulledBlob(out, digest))}` !== digest) throw new Error(`${out}: the manifest does not match its digest`);
  return { digest, ms };
}

/** Where a pulled layout keeps the blob of a digest. */
export function pulledBlob(out: string, digest: string): string {
  return path.join(out, 'blobs/sha256', digest.slice(7));
}
