/**
 * `shoal site init`: everything a new site needs, made once on the operator's
 * machine: the publisher's key pair, a random site secret, and the config.json
 * every machine of the site gets. Nothing is overwritten without --force, and
 * the private key is never written into a git work tree (where it would be one
 * `git add .` from being published) unless forced.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { args, EXIT, writeFileAtomic, type Io } from '../manifests/cli-kit.js';
import { generateSigningKey, writeKeyPair } from '../manifests/keys.js';
import { ShoalError } from '../daemon/errors.js';
import { DEFAULTS, loadConfig, SITE_SECRET_CREDENTIAL } from '../daemon/config/config.js';

export const SITE_HELP: Record<string, string> = {
  site: `shoal site init --out DIR [--site-id ID] [--interfaces eth0,...] [--static-peers host:7400,...] [--force] [--json]
  Make a new site: DIR/publisher/shoal.key (the publisher's private key, mode 0600; keep it
  off the fleet) and shoal.pub, DIR/site.secret (a random secret, mode 0600: peer links are
  TLS 1.3 with a key derived from it), and DIR/config.json for every machine of the site
  (mDNS discovery, the publisher key trusted). Prints the commands that install them.
  Refuses to overwrite files, or to write inside a git work tree, unless --force.`,
};

async function exists(p: string) {
  return fs.stat(p).then(() => true, () => false);
}

/** The enclosing git work tree of dir, if any (a `.git` folder or file in it or above). */
async function gitWorkTree(dir: string): Promise<string | undefined> {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (await exists(path.join(d, '.git'))) return d;
    if (path.dirname(d) === d) return undefined;
  }
}

const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);

async function init(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = args(argv, {
    out: { type: 'string' }, 'site-id': { type: 'string' }, interfaces: { type: 'string' }, 'static-peers': { type: 'string' },
    force: { type: 'boolean' }, json: { type: 'boolean' },
  });
  if (values.help) { io.out(SITE_HELP.site!); return EXIT.ok; }
  if (positionals[0] !== 'init' || positionals.length > 1) throw new ShoalError('usage', 'expected: shoal site init --out DIR');
  if (!values.out) throw new ShoalError('usage', 'missing --out DIR (where the key, the secret and config.json go)');
  const out = path.resolve(values.out);
  const siteId = values['site-id'] ?? `site-${randomBytes(3).toString('hex')}`;
  const repo = await gitWorkTree(out);
  if (repo && !values.force) throw new ShoalError('usage', `${out} is inside the git work tree ${repo}: a private key there is one commit from public (pick another --out, or --force)`);
  const files = { key: path.join(out, 'publisher', 'shoal.key'), pub: path.join(out, 'publisher', 'shoal.pub'), secret: path.join(out, 'site.secret'), config: path.join(out, 'config.json') };
  if (!values.force) for (const f of Object.values(files)) if (await exists(f)) throw new ShoalError('usage', `${f} already exists (use --force to replace it)`);

  const key = generateSigningKey();
  const config = {
    peerListen: '0.0.0.0:7400',
    adminListen: '127.0.0.1:7401',
    aptListen: '127.0.0.1:3142',
    ociListen: '127.0.0.1:7402',
    discovery: 'mdns',
    interfaces: list(values.interfaces),
    ...(values['static-peers'] ? { staticPeers: list(values['static-peers']) } : {}),
    trustedKeys: [key.publicKey.text],
    threshold: 1,
    cacheMaxBytes: '20GiB',
    siteId,
  };
  const secret = randomBytes(32).toString('base64url');
  // What we write must load: the daemon's own checks (site id, peers, the secret's form), before any file exists.
  const probeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'shoal-site-init-'));
  try {
    await fs.writeFile(path.join(probeDir, 'config.json'), JSON.stringify({ ...config, siteSecret: secret, cacheDir: DEFAULTS.cacheDir }), { mode: 0o600 });
    await loadConfig({ file: path.join(probeDir, 'config.json'), env: {} });
  } catch (e) {
    throw e instanceof ShoalError ? new ShoalError('usage', e.message.replace(/^config file \S+?:\s*config key /, '')) : e;
  } finally {
    await fs.rm(probeDir, { recursive: true, force: true });
  }
  await fs.mkdir(out, { recursive: true, mode: 0o700 });
  // Created 0600 (the umask can only take bits away), never readable by others even for a moment.
  await writeFileAtomic(files.secret, `${secret}\n`, 0o600);
  await writeKeyPair(path.dirname(files.key), key, { force: true });
  await writeFileAtomic(files.config, `${JSON.stringify(config, null, 2)}\n`, 0o644);

  if (values.json) {
    io.out(JSON.stringify({ ok: true, siteId, keyId: key.keyid, publicKey: key.publicKey.text, files }));
    return EXIT.ok;
  }
  io.out(`site ${siteId}: made in ${out}`);
  io.out(`  ${files.key}   the publisher's private key (0600): keep it where you publish, never on the fleet`);
  io.out(`  ${files.pub}   its public key, trusted by config.json`);
  io.out(`  ${files.secret}      the site secret (0600): peer links are TLS 1.3 with a key derived from it`);
  io.out(`  ${files.config}      the config of every machine of the site`);
  io.out('');
  io.out('next, on every machine of the site (with the shoal package installed):');
  io.out(`  sudo install -D -m 0644 ${files.config} /etc/shoal/config.json`);
  io.out(`  sudo install -D -m 0600 ${files.secret} /etc/credstore/${SITE_SECRET_CREDENTIAL}`);
  io.out('  sudo systemctl restart shoal && shoal status');
  if (!config.interfaces.length) io.out('  (config.json names no interfaces: set "interfaces" to the LAN ones, or the peer port answers on every interface)');
  io.out('');
  io.out('then publish a release where you keep the key:');
  io.out(`  shoal publish ./release --name app --version 1.0.0 --sequence 1 --key ${files.key} --base-url https://updates.example/app/1.0.0/ -o app-1.0.0.json`);
  return EXIT.ok;
}

export const SITE_VERBS = { site: init };
