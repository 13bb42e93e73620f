/**
 * A site testbed of real network hosts: a bridge, N network namespaces on it
 * (198.18.0.11, .12, …; eth0; a 224.0.0.0/4 route so multicast flows), and the
 * root namespace on the bridge at 198.18.0.1 as the origin, whose uplink
 * (the bridge device's egress) can be shaped with tc tbf like a WAN link.
 * Everything is torn down on cleanup, and leftovers of killed runs on start.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

const PREFIX = 'shoalt-';
export const ORIGIN_IP = '198.18.0.1';

function sh(cmd: string, args: string[]) {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Whether this machine can build the testbed; the reason when it cannot. */
export function netnsSupport(): { ok: true } | { ok: false; reason: string } {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'network namespaces need root' };
  const probe = `${PREFIX}probe-${process.pid}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { ok: false, reason: `ip netns add failed: ${r.error?.message ?? r.stderr.trim()}` };
  spawnSync('ip', ['netns', 'del', probe]);
  return { ok: true };
}

/** Removes namespaces and bridges left by runs that were killed before their cleanup. */
export function removeLeftovers() {
  const ns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
  for (const line of ns.split('\n')) {
    const name = line.split(' ')[0];
    if (name?.startsWith(PREFIX)) spawnSync('ip', ['netns', 'del', name]);
  }
  const links = spawnSync('ip', ['-o', 'link', 'show', 'type', 'bridge'], { encoding: 'utf8' }).stdout ?? '';
  for (const m of links.matchAll(/^\d+: (sbr[0-9a-f]{4,})[:@]/gm)) spawnSync('ip', ['link', 'del', m[1]!]);
}

export interface Host {
  ns: string;
  ip: string;
}

export interface Testbed {
  bridge: string;
  hosts: Host[];
  originIp: string;
  cleanup(): void;
}

/** `lanBitsPerSec`: every host's own link capped both ways (tbf on each end of its veth), so a central box's link counts. */
export function createTestbed(n: number, opts: { wanBitsPerSec?: number; lanBitsPerSec?: number } = {}): Testbed {
  removeLeftovers();
  const tag = randomBytes(3).toString('hex');
  const bridge = `sbr${tag}`;
  const hosts: Host[] = [];
  const cleanup = () => {
    for (const h of hosts) spawnSync('ip', ['netns', 'del', h.ns]);
    spawnSync('ip', ['link', 'del', bridge]);
  };
  try {
    sh('ip', ['link', 'add', bridge, 'type', 'bridge']);
    sh('ip', ['addr', 'add', `${ORIGIN_IP}/24`, 'dev', bridge]);
    sh('ip', ['link', 'set', bridge, 'up']);
    if (opts.wanBitsPerSec) {
      // The origin's uplink: everything the root namespace sends into the site.
      sh('tc', ['qdisc', 'add', 'dev', bridge, 'root', 'tbf', 'rate', `${opts.wanBitsPerSec}bit`, 'burst', '256kb', 'latency', '400ms']);
    }
    for (let i = 0; i < n; i++) {
      const ns = `${PREFIX}${tag}-${i}`;
      const ip = `198.18.0.${11 + i}`;
      const outer = `sv${tag}${i}`;
      const inner = `si${tag}${i}`;
      sh('ip', ['netns', 'add', ns]);
      hosts.push({ ns, ip });
      sh('ip', ['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner]);
      sh('ip', ['link', 'set', outer, 'master', bridge]);
      sh('ip', ['link', 'set', outer, 'up']);
      sh('ip', ['link', 'set', inner, 'netns', ns]);
      sh('ip', ['-n', ns, 'link', 'set', inner, 'name', 'eth0']);
      sh('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      sh('ip', ['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
      if (opts.lanBitsPerSec) {
        const tbf = ['root', 'tbf', 'rate', `${opts.lanBitsPerSec}bit`, 'burst', '1mb', 'latency', '100ms'];
        sh('tc', ['qdisc', 'add', 'dev', outer, ...tbf]);
        sh('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', ...tbf]);
      }
    }
  } catch (e) {
    cleanup();
    throw e;
  }
  return { bridge, hosts, originIp: ORIGIN_IP, cleanup };
}
