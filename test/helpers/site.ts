/**
 * Multi-daemon test sites on 127.0.0.1: real shoald processes, real HTTP,
 * real disk. Each daemon gets its own cache dir and a config file; ports are
 * picked free up front so static peer lists can name them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { AgentClient } from '../../agent-api/client.js';
import { ROOT } from './fixtures.js';
import { until } from './until.js';

export const SHOALD = path.join(ROOT, 'dist/daemon/shoald.js');

/**
 * Addresses for daemons' peer listeners: each its own random loopback address
 * (the whole of 127.0.0.0/8 is local) on port 7400. Ports picked free and then
 * closed can be taken by an outgoing connection before the daemon binds them;
 * an address of our own cannot.
 */
export async function peerAddresses(n: number, port = 7400): Promise<string[]> {
  const out: string[] = [];
  while (out.length < n) {
    const host = `127.${1 + Math.floor(Math.random() * 254)}.${Math.floor(Math.random() * 256)}.${1 + Math.floor(Math.random() * 254)}`;
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, host, () => s.close(() => resolve(true)));
    });
    if (free && !out.includes(`${host}:${port}`)) out.push(`${host}:${port}`);
  }
  return out;
}

export interface RunningDaemon {
  name: string;
  dir: string;
  /** "host:port" of the peer listener. */
  peer: string;
  peerHost: string;
  peerPort: number;
  adminPort: number;
  /** The apt proxy's port (0: none). */
  aptPort: number;
  /** The OCI mirror's port (0: none). */
  ociPort: number;
  peerId: string;
  api: string;
  client: AgentClient;
  proc: ChildProcess;
  logs: string[];
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface DaemonOptions {
  name: string;
  dir: string;
  /** "host:port" for the peer listener (see peerAddresses). */
  peer: string;
  /** "host:port" of other daemons; our own address is skipped. */
  staticPeers: string[];
  /** Run inside this network namespace; the test then talks to it over its agent socket. */
  netns?: string;
  trustedKeys: string[];
  config?: Record<string, unknown>;
  /** Run under this descriptor limit (ulimit -n). */
  maxOpenFiles?: number;
  /** Extra environment (e.g. CREDENTIALS_DIRECTORY, as systemd's LoadCredential= sets it). */
  env?: Record<string, string>;
}

export async function startShoald(o: DaemonOptions): Promise<RunningDaemon> {
  await fs.mkdir(o.dir, { recursive: true });
  const configFile = path.join(o.dir, 'config.json');
  const config = {
    peerListen: o.peer,
    adminListen: '127.0.0.1:0',
    aptListen: '127.0.0.1:0',
    ociListen: '127.0.0.1:0',
    cacheDir: path.join(o.dir, 'cache'),
    trustedKeys: o.trustedKeys,
    staticPeers: o.staticPeers.filter((p) => p !== o.peer),
    leaseTtlMs: 3000,
    requestTimeoutMs: 10_000,
    banMs: 60_000,
    logLevel: 'info',
    ...(o.netns ? { agentSocket: path.join(o.dir, 'agent.sock') } : {}),
    ...o.config,
  };
  await fs.writeFile(configFile, JSON.stringify(config, null, 2));
  // SHOALD_NODE_ARGS: extra Node flags for the daemons (e.g. --cpu-prof when profiling a benchmark).
  const nodeArgs = (process.env.SHOALD_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // Source maps make test failures readable; benchmarks turn them off to measure the daemon as installed.
  const maps = process.env.SHOALD_SOURCE_MAPS === '0' ? [] : ['--enable-source-maps'];
  const argv = [...nodeArgs, ...maps, SHOALD, '--config', configFile];
  const opts = { stdio: ['ignore', 'pipe', 'pipe'] as ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } };
  const cmd = [process.execPath, ...argv];
  if (o.maxOpenFiles) cmd.unshift('sh', '-c', `ulimit -n ${o.maxOpenFiles} && exec "$@"`, 'sh');
  if (o.netns) cmd.unshift('ip', 'netns', 'exec', o.netns);
  const proc = spawn(cmd[0]!, cmd.slice(1), opts);
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const ready = await new Promise<{ peerId: string; adminPort: number; aptPort?: number; ociPort?: number }>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`${o.name} did not start: ${logs.join('\n')}`)); }, 15_000);
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        if (logs.length > 2000) logs.shift();
        try {
          const j = JSON.parse(line) as { msg?: string; peerId?: string; adminPort?: number; aptPort?: number; ociPort?: number };
          if (j.msg === 'shoald ready') { clearTimeout(timer); resolve({ peerId: j.peerId!, adminPort: j.adminPort!, aptPort: j.aptPort ?? 0, ociPort: j.ociPort ?? 0 }); }
        } catch { /* not JSON */ }
      }
    });
    proc.stderr!.on('data', (d: Buffer) => logs.push(`stderr: ${d.toString()}`));
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`${o.name} exited ${code}: ${logs.join('\n')}`)); });
  });
  const api = `http://127.0.0.1:${ready.adminPort}`;
  const [peerHost, peerPort] = [o.peer.slice(0, o.peer.lastIndexOf(':')), Number(o.peer.slice(o.peer.lastIndexOf(':') + 1))];
  return {
    name: o.name, dir: o.dir, peer: o.peer, peerHost, peerPort, adminPort: ready.adminPort, aptPort: ready.aptPort ?? 0, ociPort: ready.ociPort ?? 0, peerId: ready.peerId, api,
    client: o.netns ? new AgentClient({ socket: path.join(o.dir, 'agent.sock') }) : new AgentClient({ api }), proc, logs, exited,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}

/**
 * kill -9 `d` and return the origin's range bytes in flight at that moment. The
 * victim's own requests end with it, so they are counted just before the kill;
 * everyone else's are counted after it as well.
 */
export async function killCountingInFlight(d: RunningDaemon, origin: { inFlightRangeBytes(): number }): Promise<number> {
  const before = origin.inFlightRangeBytes();
  await d.kill('SIGKILL');
  return Math.max(before, origin.inFlightRangeBytes());
}

/** Starts n daemons that all list each other as static peers; stops them at teardown (also when one fails to start). */
export async function startSite(t: { teardown(fn: () => unknown): void }, root: string, n: number, trustedKeys: string[], config: Record<string, unknown> = {}, extraAddresses = 0) {
  const addresses = await peerAddresses(n + extraAddresses);
  const daemons: RunningDaemon[] = [];
  t.teardown(async () => {
    await Promise.all(daemons.map(async (d) => { await d.client.close(); await d.kill('SIGKILL'); }));
  });
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    daemons.push(await startShoald({ name: `d${i}`, dir: path.join(root, `d${i}`), peer: addresses[i]!, staticPeers: addresses, trustedKeys, config }));
  }));
  daemons.sort((a, b) => Number(a.name.slice(1)) - Number(b.name.slice(1)));
  return { daemons, addresses };
}

/** Waits until every daemon sees `want` healthy peers. */
export async function waitForPeers(daemons: RunningDaemon[], want: number, timeoutMs = 10_000) {
  for (const d of daemons) {
    const exited = () => d.proc.exitCode !== null || d.proc.signalCode !== null;
    await until(async () => exited() || (await d.client.peers().catch(() => [])).filter((p) => p.healthy).length >= want, `${d.name} to see ${want} healthy peers`, timeoutMs, 100);
  }
}
