/**
 * `npm run build` step after tsc: compiles the optional native addons with
 * the system C compiler and the Node-API headers, each daemon/native/NAME.c
 * into dist/daemon/native/NAME.node:
 * - sha256-pair: a chunk check and the whole-blob hash in one pass (x86 SHA);
 * - buffer-address: where a buffer's bytes are, for O_DIRECT writes.
 * No node-gyp: it would fetch Node's full headers over the network, and
 * Node-API needs only four header files (the node-api-headers package, else
 * the ones installed with Node).
 *
 * Without a compiler the build still succeeds: it says so, and the daemon
 * hashes with OpenSSL (two passes per byte instead of one paired pass) and
 * writes chunks through the page cache.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/daemon/native
const ADDONS = ['sha256-pair', 'buffer-address'];

function headerDirs(): string[] {
  const dirs: string[] = [];
  try {
    dirs.push(path.join(path.dirname(createRequire(import.meta.url).resolve('node-api-headers/package.json')), 'include'));
  } catch { /* not installed (production tree): try Node's own */ }
  dirs.push(path.resolve(path.dirname(process.execPath), '../include/node'));
  return dirs.filter((d) => existsSync(path.join(d, 'node_api.h')));
}

function build(name: string): string {
  const source = path.resolve(here, `../../../daemon/native/${name}.c`);
  const addon = path.join(here, `${name}.node`);
  if (process.env.SHOAL_NATIVE === '0') return 'skipped (SHOAL_NATIVE=0)';
  if (!existsSync(source)) return `skipped: ${source} is missing`;
  if (existsSync(addon) && statSync(addon).mtimeMs >= statSync(source).mtimeMs) return 'up to date';
  const include = headerDirs()[0];
  if (!include) return 'skipped: no Node-API headers (npm ci installs node-api-headers)';
  const cc = process.env.CC || 'cc';
  const tmp = `${addon}.${process.pid}.tmp`;
  const r = spawnSync(cc, ['-O3', '-fPIC', '-shared', '-Wall', '-Werror', '-fvisibility=hidden', '-I', include, '-o', tmp, source], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    const why = r.error ? `${cc}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}` : r.stderr.trim().split('\n').slice(0, 5).join('\n');
    return `skipped: could not compile (${why})`;
  }
  renameSync(tmp, addon);
  return `built ${path.relative(process.cwd(), addon)}`;
}

for (const name of ADDONS) console.log(`native ${name}: ${build(name)}`);
