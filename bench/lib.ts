/** Small helpers shared by the benchmarks: temp dirs, test data, medians, RSS. */
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), `shoal-bench-${prefix}-`));
}

/** Writes `size` pseudo-random bytes (1 MiB of randomness repeated with a counter, so it never dedups). */
export async function makeFile(file: string, size: number): Promise<void> {
  const block = randomBytes(1 << 20);
  const out = createWriteStream(file);
  let written = 0;
  for (let i = 0; written < size; i++) {
    const b = Buffer.from(block);
    b.writeUInt32LE(i, 0);
    const n = Math.min(b.length, size - written);
    if (!out.write(n === b.length ? b : b.subarray(0, n))) await new Promise<void>((r) => out.once('drain', () => r()));
    written += n;
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export async function timeCommand(cmd: string, args: string[]): Promise<number> {
  return (await timeCommandCpu(cmd, args)).ms;
}

export const MiB = 1 << 20;
export const fmt = (x: number, d = 2) => x.toFixed(d);

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** The stat fields after the command name (which may hold spaces): [0] is the state. */
function statFields(text: string): string[] {
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** CPU seconds (user + system, all threads) a live process has used so far. */
export function cpuSeconds(pid: number | undefined): number {
  const f = statFields(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** Runs a command; its wall time and the CPU seconds it (and its children) used. */
export async function timeCommandCpu(cmd: string, args: string[]): Promise<{ ms: number; cpu: number }> {
  // A shell runs it and then reads its own children's CPU totals (cutime, cstime).
  const script = '"$@" || exit $?; read -r s < /proc/$$/stat; echo "$s"';
  const t = performance.now();
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn('sh', ['-c', script, 'sh', cmd, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    p.stdout.on('data', (d: Buffer) => { text += d.toString(); });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`${cmd} exited ${code}`))));
  });
  const ms = performance.now() - t;
  const f = statFields(out.trim().split('\n').pop()!);
  return { ms, cpu: (Number(f[13]) + Number(f[14])) / CLK_TCK };
}
