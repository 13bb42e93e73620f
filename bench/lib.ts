/** Small helpers shared by the benchmarks: temp dirs, test data, medians, RSS. */
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';

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
  const t = performance.now();
  await new Promise<void>((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}`))));
  });
  return performance.now() - t;
}

export const MiB = 1 << 20;
export const fmt = (x: number, d = 2) => x.toFixed(d);
