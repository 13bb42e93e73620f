/**
 * `npm run build` step after tsc: compiles the optional native hasher
 * (sha256-pair.c) into dist/daemon/native/sha256-pair.node with the system C
 * compiler and the Node-API headers. No node-gyp: it would fetch Node's full
 * headers over the network, and Node-API needs only four header files
 * (the node-api-headers package, else the ones installed with Node).
 *
 * Without a compiler the build still succeeds: it says so, and the daemon
 * hashes with OpenSSL (two passes per byte instead of one paired pass).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/daemon/native
const source = path.resolve(here, '../../../daemon/native/sha256-pair.c');
const ADDON = path.join(here, 'sha256-pair.node');

function headerDirs(): string[] {
  const dirs: string[] = [];
  try {
    dirs.push(path.join(path.dirname(createRequire(import.meta.url).resolve('node-api-headers/package.json')), 'include'));
  } catch { /* not installed (production tree): try Node's own */ }
  dirs.push(path.resolve(path.dirname(process.execPath), '../include/node'));
  return dirs.filter((d) => existsSync(path.join(d, 'node_api.h')));
}

function build(): string {
  if (process.env.SHOAL_NATIVE === '0') return 'skipped (SHOAL_NATIVE=0)';
  if (!existsSync(source)) return `skipped: ${source} is missing`;
  if (existsSync(ADDON) && statSync(ADDON).mtimeMs >= statSync(source).mtimeMs) return 'up to date';
  const include = headerDirs()[0];
  if (!include) return 'skipped: no Node-API headers (npm ci installs node-api-headers)';
  const cc = process.env.CC || 'cc';
  const tmp = `${ADDON}.${process.pid}.tmp`;
  const r = spawnSync(cc, ['-O2', '-fPIC', '-shared', '-Wall', '-Werror', '-fvisibility=hidden', '-I', include, '-o', tmp, source], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { force: true });
    const why = r.error ? `${cc}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}` : r.stderr.trim().split('\n').slice(0, 5).join('\n');
    return `skipped: could not compile (${why})`;
  }
  renameSync(tmp, ADDON);
  return `built ${path.relative(process.cwd(), ADDON)}`;
}

console.log(`native sha256-pair: ${build()}`);
