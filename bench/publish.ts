/**
 * publish: hash a 1 GiB file with shoal's chunker (chunk hashes + whole-file
 * SHA-256) against `openssl dgst -sha256` (whole-file hash only) on the same
 * file, alternating runs. Prints the median throughput ratio and peak RSS.
 */
import { fork } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, makeFile, median, MiB, tempDir, timeCommand } from './lib.js';

const SIZE = Number(process.env.BENCH_PUBLISH_BYTES ?? 1024 * MiB);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

interface ChildResult { ms: number; maxRssKiB: number; chunks: number }

function runChild(file: string, keyDir: string): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(path.dirname(fileURLToPath(import.meta.url)), 'publish-child.js'), [file, keyDir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.once('message', (m) => resolve(m as ChildResult));
    child.once('exit', (code) => code !== 0 && reject(new Error(`publish child exited ${code}`)));
  });
}

export async function benchPublish(): Promise<void> {
  const dir = await tempDir('publish');
  try {
    const file = path.join(dir, 'artifact.bin');
    await makeFile(file, SIZE);
    const keyDir = path.join(dir, 'keys');
    const openssl: number[] = [];
    const shoal: number[] = [];
    let rss = 0;
    await timeCommand('openssl', ['dgst', '-sha256', file]); // warm the page cache
    for (let i = 0; i < RUNS; i++) {
      openssl.push(await timeCommand('openssl', ['dgst', '-sha256', file]));
      const r = await runChild(file, keyDir);
      shoal.push(r.ms);
      rss = Math.max(rss, r.maxRssKiB);
    }
    const mibs = (ms: number) => SIZE / MiB / (ms / 1000);
    console.log(`publish: ${SIZE / MiB} MiB, ${RUNS} runs each`);
    console.log(`  openssl dgst -sha256   median ${fmt(median(openssl), 0)} ms  ${fmt(mibs(median(openssl)), 0)} MiB/s`);
    console.log(`  shoal publish          median ${fmt(median(shoal), 0)} ms  ${fmt(mibs(median(shoal)), 0)} MiB/s  (chunk hashes + whole hash + sign)`);
    console.log(`  throughput ratio shoal/openssl: ${fmt(median(openssl) / median(shoal))}  (target ≥ 0.90)`);
    console.log(`  peak RSS of the publishing process: ${fmt(rss / 1024, 1)} MiB  (target < 100 MiB)`);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
