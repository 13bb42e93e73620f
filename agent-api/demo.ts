/**
 * `npm run demo`: the whole product on one machine, with nothing to configure.
 * Today: makes a signing key, publishes a sample artifact and verifies it —
 * the publisher's side of a release.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCli } from './cli.js';

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'shoal-demo-'));
const step = async (title: string, argv: string[]) => {
  console.log(`\n$ shoal ${argv.join(' ')}`);
  const code = await runCli(argv);
  if (code !== 0) throw new Error(`${title} failed with exit code ${code}`);
};
try {
  await fs.mkdir(path.join(dir, 'release/bin'), { recursive: true });
  await fs.writeFile(path.join(dir, 'release/bin/app'), randomBytes(12 << 20));
  await fs.writeFile(path.join(dir, 'release/README.txt'), 'demo release\n');
  await step('keygen', ['keygen', '--out', path.join(dir, 'keys')]);
  await step('publish', ['publish', path.join(dir, 'release'), '--name', 'demo-app', '--version', '1.0.0', '--sequence', '1',
    '--key', path.join(dir, 'keys/shoal.key'), '--base-url', 'http://127.0.0.1:7480/files/', '-o', path.join(dir, 'manifest.json')]);
  await step('verify', ['verify', path.join(dir, 'manifest.json'), '--trust', path.join(dir, 'keys/shoal.pub'), '--file', path.join(dir, 'release/bin/app')]);
  console.log(`\ndemo ok${process.env.SHOAL_DEMO_KEEP ? `: files kept in ${dir}` : " (set SHOAL_DEMO_KEEP=1 to keep its files)"}`);
} finally {
  if (!process.env.SHOAL_DEMO_KEEP) await fs.rm(dir, { recursive: true, force: true });
}
