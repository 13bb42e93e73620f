/**
 * A real signed apt repository built in the test: .debs made with dpkg-deb,
 * indexes with apt-ftparchive, signed with a throwaway gpg key (InRelease and
 * Release.gpg), the way a Debian archive is laid out:
 *   ROOT/pool/main/<name>_<version>_all.deb
 *   ROOT/dists/<suite>/{InRelease,Release,Release.gpg}
 *   ROOT/dists/<suite>/main/binary-amd64/Packages{,.gz,.xz}
 *   ROOT/dists/<suite>/main/binary-amd64/by-hash/SHA256/<sha256 of each>
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeFile } from '../../bench/lib.js';

const run = promisify(execFile);

export const APT_TOOLS = ['dpkg-deb', 'apt-ftparchive', 'gpg', 'gpgv', 'xz'];

export interface AptRepo {
  root: string;
  suite: string;
  /** The public key, binary and ASCII-armoured (as apt accepts in Signed-By). */
  keyring: string;
  keyringAsc: string;
  fingerprint: string;
  gnupgHome: string;
  debs: Array<{ name: string; version: string; filename: string; size: number }>;
}

export async function makeAptRepo(root: string, packages: Array<{ name: string; version?: string; bytes: number }>, suite = 'stable'): Promise<AptRepo> {
  const gnupgHome = path.join(root, '..', `${path.basename(root)}-gnupg`);
  await fs.mkdir(gnupgHome, { recursive: true, mode: 0o700 });
  const gpg = (...args: string[]) => run('gpg', ['--batch', '--homedir', gnupgHome, '--pinentry-mode', 'loopback', '--passphrase', '', ...args]);
  await gpg('--quick-gen-key', 'shoal test archive <archive@test.invalid>', 'ed25519', 'sign', 'never');
  const { stdout: colons } = await gpg('--with-colons', '--list-keys');
  const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(colons)![1]!;
  const keyring = path.join(root, '..', `${path.basename(root)}-keyring.gpg`);
  const keyringAsc = `${keyring.slice(0, -4)}.asc`;
  await fs.writeFile(keyring, (await run('gpg', ['--batch', '--homedir', gnupgHome, '--export', fingerprint], { encoding: 'buffer' })).stdout);
  await fs.writeFile(keyringAsc, (await gpg('--export', '--armor', fingerprint)).stdout);
  const repo: AptRepo = { root, suite, keyring, keyringAsc, fingerprint, gnupgHome, debs: [] };
  for (const p of packages) await addDeb(repo, p.name, p.version ?? '1.0', p.bytes);
  await writeIndexes(repo);
  return repo;
}

/** Builds one .deb of about `bytes` (random payload, so it does not compress) into the pool. */
export async function addDeb(repo: AptRepo, name: string, version: string, bytes: number) {
  const work = path.join(repo.root, '..', `build-${name}-${version}`);
  await fs.rm(work, { recursive: true, force: true });
  await fs.mkdir(path.join(work, 'DEBIAN'), { recursive: true });
  await fs.mkdir(path.join(work, 'usr/share', name), { recursive: true });
  await makeFile(path.join(work, 'usr/share', name, 'payload.bin'), bytes);
  await fs.writeFile(path.join(work, 'DEBIAN/control'), `Package: ${name}\nVersion: ${version}\nArchitecture: all\nMaintainer: shoal tests <t@test.invalid>\nDescription: test package ${name}\n a payload of ${bytes} bytes\n`);
  const filename = `pool/main/${name}_${version}_all.deb`;
  await fs.mkdir(path.join(repo.root, 'pool/main'), { recursive: true });
  await run('dpkg-deb', ['-Znone', '--root-owner-group', '--build', work, path.join(repo.root, filename)]);
  await fs.rm(work, { recursive: true, force: true });
  repo.debs = repo.debs.filter((d) => d.name !== name);
  repo.debs.push({ name, version, filename, size: (await fs.stat(path.join(repo.root, filename))).size });
}

/** Packages (plain, .gz, .xz), Release and its two signatures, for what is in the pool now. */
export async function writeIndexes(repo: AptRepo) {
  const dist = path.join(repo.root, 'dists', repo.suite);
  const bin = path.join(dist, 'main/binary-amd64');
  await fs.rm(path.join(bin, 'by-hash'), { recursive: true, force: true });
  await fs.mkdir(bin, { recursive: true });
  const { stdout: packages } = await run('apt-ftparchive', ['packages', 'pool'], { cwd: repo.root, maxBuffer: 256 << 20 });
  await fs.writeFile(path.join(bin, 'Packages'), packages);
  await run('sh', ['-c', `gzip -9nkf Packages && xz -kf Packages`], { cwd: bin });
  for (const f of ['InRelease', 'Release', 'Release.gpg']) await fs.rm(path.join(dist, f), { force: true });
  const { stdout: release } = await run('apt-ftparchive', ['-o', `APT::FTPArchive::Release::Suite=${repo.suite}`, '-o', 'APT::FTPArchive::Release::Codename=' + repo.suite,
    '-o', 'APT::FTPArchive::Release::Components=main', '-o', 'APT::FTPArchive::Release::Architectures=amd64', '-o', 'APT::FTPArchive::Release::Acquire-By-Hash=yes', 'release', '.'], { cwd: dist });
  await fs.writeFile(path.join(dist, 'Release'), release);
  // Acquire-By-Hash: every index also under its hash, as an archive keeps old ones while mirrors sync.
  await fs.mkdir(path.join(bin, 'by-hash/SHA256'), { recursive: true });
  for (const f of ['Packages', 'Packages.gz', 'Packages.xz']) {
    const sha = createHash('sha256').update(await fs.readFile(path.join(bin, f))).digest('hex');
    await fs.copyFile(path.join(bin, f), path.join(bin, 'by-hash/SHA256', sha));
  }
  const gpgArgs = ['--batch', '--homedir', repo.gnupgHome, '--pinentry-mode', 'loopback', '--passphrase', '', '--local-user', repo.fingerprint, '--digest-algo', 'SHA512'];
  await run('gpg', [...gpgArgs, '--clearsign', '-o', path.join(dist, 'InRelease'), path.join(dist, 'Release')]);
  await run('gpg', [...gpgArgs, '--detach-sign', '--armor', '-o', path.join(dist, 'Release.gpg'), path.join(dist, 'Release')]);
}
