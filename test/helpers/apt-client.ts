/**
 * The real apt-get, run with a state of its own (sources, lists, archives,
 * dpkg status, no host apt.conf.d), so a test never touches the machine's apt
 * and several "machines" can run at once, each through its own proxy.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';

export interface AptClient {
  dir: string;
  /** Runs apt-get with these arguments; resolves with its exit code and output. */
  run(args: string[]): Promise<{ code: number; out: string }>;
  /** The .debs apt has downloaded into its archive folder. */
  archives(): Promise<string[]>;
  archiveDir: string;
}

export async function aptClient(dir: string, o: { repoUrl: string; suite: string; keyring: string; proxy?: string; autoDetect?: string; netns?: string }): Promise<AptClient> {
  const d = (p: string) => path.join(dir, p);
  for (const p of ['etc/sources.list.d', 'etc/apt.conf.d', 'etc/preferences.d', 'state/lists/partial', 'cache/archives/partial']) await fs.mkdir(d(p), { recursive: true });
  await fs.writeFile(d('state/status'), '');
  await fs.writeFile(d('etc/sources.list'), `deb [signed-by=${o.keyring}] ${o.repoUrl} ${o.suite} main\n`);
  const conf = [
    `Dir::Etc::SourceList "${d('etc/sources.list')}";`, `Dir::Etc::SourceParts "${d('etc/sources.list.d')}";`,
    `Dir::Etc::Parts "${d('etc/apt.conf.d')}";`, `Dir::Etc::PreferencesParts "${d('etc/preferences.d')}";`, `Dir::Etc::Preferences "${d('etc/preferences')}";`,
    `Dir::State "${d('state')}";`, `Dir::State::status "${d('state/status')}";`, `Dir::Cache "${d('cache')}";`,
    'APT::Architecture "amd64";', 'APT::Architectures { "amd64"; };', 'APT::Sandbox::User "root";', 'Debug::NoLocking "true";',
    'Acquire::Languages "none";', 'Acquire::Retries "0";', 'Acquire::http::Timeout "60";',
    o.proxy ? `Acquire::http::Proxy "${o.proxy}";` : 'Acquire::http::Proxy "DIRECT";',
    ...(o.autoDetect ? [`Acquire::http::Proxy-Auto-Detect "${o.autoDetect}";`] : []),
  ];
  await fs.writeFile(d('apt.conf'), `${conf.join('\n')}\n`);
  const archiveDir = d('cache/archives');
  return {
    dir, archiveDir,
    run: (args) => new Promise((resolve) => {
      const cmd = [...(o.netns ? ['ip', 'netns', 'exec', o.netns] : []), 'apt-get', '-q', ...args];
      execFile(cmd[0]!, cmd.slice(1), { env: { ...process.env, APT_CONFIG: d('apt.conf'), DEBIAN_FRONTEND: 'noninteractive' }, maxBuffer: 16 << 20, timeout: 300_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}` });
      });
    }),
    archives: async () => (await fs.readdir(archiveDir)).filter((f) => f.endsWith('.deb')).sort(),
  };
}
