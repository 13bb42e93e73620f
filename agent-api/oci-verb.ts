/** `shoal oci configure CLIENT [--undo]`: container clients pointed at the local OCI mirror. */
import { existsSync } from 'node:fs';
import { args, EXIT, type Io } from '../manifests/cli-kit.js';
import { ShoalError } from '../daemon/errors.js';
import { loadConfig } from '../daemon/config/config.js';
import { CLIENTS, configure, undo, type Client } from './oci-configure.js';

export const OCI_HELP: Record<string, string> = {
  oci: `shoal oci configure containerd|docker|podman [--undo] [--config FILE] [--root DIR] [--json]
  Point a container client at this machine's OCI mirror (ociListen): containerd's
  certs.d/<registry>/hosts.toml (the mirror first, the registry as fallback, dial_timeout 200ms),
  Docker's registry-mirrors in daemon.json (Docker Hub only), or a registries.conf.d drop-in
  (podman, skopeo, CRI-O). Files that were there are backed up; --undo removes exactly what
  shoal wrote and restores the backups. The registries are the daemon's ociRegistries, read from
  --config (default /etc/shoal/config.json when present). --root writes under DIR instead of /.`,
};

export const OCI_VERBS = {
  async oci(argv: string[], io: Io): Promise<number> {
    const { values, positionals } = args(argv, { undo: { type: 'boolean' }, config: { type: 'string' }, root: { type: 'string' }, json: { type: 'boolean' } });
    if (values.help) { io.out(OCI_HELP.oci!); return EXIT.ok; }
    const [action, client, ...extra] = positionals;
    if (action !== 'configure') throw new ShoalError('usage', 'expected: shoal oci configure containerd|docker|podman [--undo]');
    if (!CLIENTS.includes(client as Client)) throw new ShoalError('usage', `expected a client: ${CLIENTS.join(', ')}`);
    if (extra.length) throw new ShoalError('usage', `unexpected argument "${extra[0]}"`);
    const root = values.root ?? '/';
    let result;
    if (values.undo) result = await undo(client as Client, root);
    else {
      const file = values.config ?? (existsSync('/etc/shoal/config.json') ? '/etc/shoal/config.json' : undefined);
      const cfg = await loadConfig({ ...(file ? { file } : {}) });
      if (!cfg.ociListen) throw new ShoalError('bad-config', 'ociListen is off in the daemon\'s config: there is no mirror to point at');
      const host = ['0.0.0.0', '::', ''].includes(cfg.ociListen.host) ? '127.0.0.1' : cfg.ociListen.host;
      if (cfg.ociListen.port === 0) throw new ShoalError('bad-config', 'ociListen has port 0: give the mirror a fixed port');
      result = await configure(client as Client, { mirror: `${host.includes(':') ? `[${host}]` : host}:${cfg.ociListen.port}`, registries: cfg.ociRegistries, resolve: cfg.ociResolve }, root);
    }
    if (values.json) io.out(JSON.stringify({ ok: true, ...result }));
    else {
      for (const f of result.wrote) io.out(`wrote    ${f}`);
      for (const f of result.removed) io.out(`removed  ${f}`);
      for (const f of result.restored) io.out(`restored ${f}`);
      for (const f of result.kept) io.out(`kept     ${f}`);
      for (const n of result.notes) io.out(`note: ${n}`);
      if (!result.wrote.length && !result.removed.length && !result.restored.length && !result.kept.length) io.out('nothing to do');
    }
    return EXIT.ok;
  },
};
