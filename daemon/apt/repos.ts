/**
 * What the apt proxy knows of the repositories it has seen: the verified
 * Release of each suite (fetched from the origin by this daemon, never from a
 * peer) and the .debs the verified Packages indexes under it name. From that,
 * each request URL is a blob with a known SHA-256 (shared by the site) or
 * something to pass through unshared. A newer Release replaces the old view at
 * once, so a name whose hash changed is never answered with its old bytes.
 */
import type { Readable } from 'node:stream';
import { ShoalError } from '../errors.js';
import { DebIndex } from './deb-index.js';
import { decompressed } from './packages.js';
import type { Release } from './release.js';

export type AptTarget =
  | { kind: 'release'; dist: string; file: 'InRelease' | 'Release' | 'Release.gpg' }
  /** `index`: a Packages file to read for .deb hashes once it is verified. */
  | { kind: 'blob'; sha256: string; size: number; what: 'index' | 'deb'; index?: { dist: string; name: string } }
  | { kind: 'pass' };

export type SignedRelease = { inRelease: Buffer } | { release: Buffer; signature: Buffer };

interface Suite {
  release: Release;
  /** SHA-256 → the first index path with that hash (by-hash requests name only the hash). */
  byHash: Map<string, { path: string; size: number }>;
}

const RELEASE_RE = /^(.*\/)dists\/(.+)\/(InRelease|Release|Release\.gpg)$/;
const BY_HASH_RE = /(?:^|\/)by-hash\/SHA256\/([0-9a-f]{64})$/;
const PACKAGES_RE = /(?:^|\/)Packages(?:\.gz|\.xz)?$/;
/** Suites and Packages indexes held at once (each index is ~40 bytes a package). */
const MAX_SUITES = 64;
const MAX_INDEXES = 64;
const MAX_PENDING_RELEASE = 16;

export class AptRepos {
  private suites = new Map<string, Suite>();
  /** Release bytes waiting for their Release.gpg (repositories without InRelease). */
  private pending = new Map<string, Buffer>();
  /** Index SHA-256 → its .deb map, the suite that vouched for it, and the repository base. */
  private indexes = new Map<string, { dist: string; base: string; debs: DebIndex }>();
  private reading = new Map<string, Promise<void>>();

  constructor(private verify: (signed: SignedRelease) => Promise<Release>, private log: (level: 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void,
    /** Debian's name for this machine's architecture: where `_all.deb` files are looked up. */
    private hostArch = debianArch(process.arch)) {}

  /** What a request URL is. */
  classify(url: URL): AptTarget {
    if (url.search) return { kind: 'pass' };
    const href = `${url.origin}${url.pathname}`;
    const r = RELEASE_RE.exec(href);
    if (r) return { kind: 'release', dist: `${r[1]}dists/${r[2]}/`, file: r[3] as 'InRelease' };
    for (const [dist, s] of this.suites) {
      if (!href.startsWith(dist)) continue;
      const rest = href.slice(dist.length);
      const h = BY_HASH_RE.exec(rest);
      const hit = h ? s.byHash.get(h[1]!) : undefined;
      const entry = hit ? { sha256: h![1]!, size: hit.size, path: hit.path } : s.release.files.has(rest) ? { ...s.release.files.get(rest)!, path: rest } : undefined;
      if (!entry) return { kind: 'pass' };
      const index = PACKAGES_RE.test(entry.path) ? { index: { dist, name: entry.path } } : {};
      return { kind: 'blob', sha256: entry.sha256, size: entry.size, what: 'index', ...index };
    }
    if (/\.(u|d)?deb$/.test(href)) {
      for (const ix of this.indexes.values()) {
        if (!href.startsWith(ix.base)) continue;
        const e = ix.debs.get(decodeURIComponent(href.slice(ix.base.length)));
        if (e) return { kind: 'blob', sha256: e.sha256, size: e.size, what: 'deb' };
      }
    }
    return { kind: 'pass' };
  }

  /**
   * A Release file of a suite came from the origin. InRelease is checked at once; Release
   * waits for its Release.gpg. A signature that fails (or no keyring for it) drops the
   * suite: nothing of it is shared until a Release verifies again.
   */
  async releaseFetched(dist: string, file: 'InRelease' | 'Release' | 'Release.gpg', body: Buffer): Promise<void> {
    if (file === 'Release') {
      this.pending.delete(dist);
      this.pending.set(dist, body);
      while (this.pending.size > MAX_PENDING_RELEASE) this.pending.delete(this.pending.keys().next().value!);
      return;
    }
    const signed: SignedRelease | undefined = file === 'InRelease' ? { inRelease: body } : this.pending.has(dist) ? { release: this.pending.get(dist)!, signature: body } : undefined;
    if (!signed) return;
    this.pending.delete(dist);
    try {
      this.install(dist, await this.verify(signed));
    } catch (e) {
      this.forget(dist);
      this.log('warn', 'apt: Release not verified, nothing of this suite is shared', { suite: dist, code: (e as ShoalError).code, error: (e as Error).message });
    }
  }

  private install(dist: string, release: Release) {
    const byHash = new Map<string, { path: string; size: number }>();
    for (const [p, e] of release.files) if (!byHash.has(e.sha256)) byHash.set(e.sha256, { path: p, size: e.size });
    this.suites.delete(dist);
    this.suites.set(dist, { release, byHash });
    while (this.suites.size > MAX_SUITES) this.forget(this.suites.keys().next().value!);
    // Indexes the new Release no longer lists vouch for nothing any more.
    for (const [sha, ix] of this.indexes) if (ix.dist === dist && !byHash.has(sha)) this.indexes.delete(sha);
  }

  private forget(dist: string) {
    this.suites.delete(dist);
    for (const [sha, ix] of this.indexes) if (ix.dist === dist) this.indexes.delete(sha);
  }

  /**
   * A .deb no read index names (the daemon restarted, and apt did not need its lists again):
   * the verified Packages index of its component and architecture that is not read yet, to
   * read now. Each index is tried once.
   */
  indexFor(url: URL): { dist: string; name: string; sha256: string; size: number } | undefined {
    const href = `${url.origin}${url.pathname}`;
    const m = /\/pool\/([^/]+)\/.*_([a-z0-9-]+)\.u?deb$/.exec(href);
    if (!m) return undefined;
    const arch = m[2] === 'all' ? this.hostArch : m[2]!;
    for (const [dist, s] of this.suites) {
      if (!href.startsWith(dist.slice(0, dist.lastIndexOf('dists/')))) continue;
      for (const ext of ['.xz', '.gz', '']) {
        const name = `${m[1]}/binary-${arch}/Packages${ext}`;
        const e = s.release.files.get(name);
        if (!e) continue;
        if (this.indexes.has(e.sha256) || this.tried.has(e.sha256)) break;
        this.tried.add(e.sha256);
        if (this.tried.size > 4 * MAX_INDEXES) this.tried.delete(this.tried.values().next().value!);
        return { dist, name, ...e };
      }
    }
    return undefined;
  }

  private tried = new Set<string>();

  /** Whether the .debs of this verified Packages index are known already (or being read). */
  hasIndex(sha256: string): boolean {
    return this.indexes.has(sha256) || this.reading.has(sha256);
  }

  /**
   * Reads a verified Packages index (streamed, decompressed by its name) into the map of
   * .debs it vouches for. Only while its suite's current Release still lists it.
   */
  readIndex(dist: string, name: string, sha256: string, open: () => Readable): Promise<void> {
    const running = this.reading.get(sha256);
    if (running || this.indexes.has(sha256)) return running ?? Promise.resolve();
    const base = dist.slice(0, dist.lastIndexOf('dists/'));
    const p = DebIndex.from(decompressed(name, open())).then((debs) => {
      if (!this.suites.get(dist)?.byHash.has(sha256)) return;
      this.indexes.set(sha256, { dist, base, debs });
      while (this.indexes.size > MAX_INDEXES) this.indexes.delete(this.indexes.keys().next().value!);
      this.log('info', 'apt: Packages index read', { index: `${dist}${name}`, debs: debs.size });
    }, (e: Error) => {
      this.log('warn', 'apt: Packages index not readable; its .debs pass through unshared', { index: `${dist}${name}`, error: e.message });
    }).finally(() => this.reading.delete(sha256));
    this.reading.set(sha256, p);
    return p;
  }
}

/** Node's process.arch in Debian's words. */
export function debianArch(arch: string): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'armhf', ia32: 'i386', ppc64: 'ppc64el', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' } as Record<string, string>)[arch] ?? arch;
}
