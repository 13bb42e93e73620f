/**
 * The content-addressed core the front-ends share: a blob known only by its
 * SHA-256 (and where the origin has it) is fetched once per site through the
 * swarm, as a learned blob (docs/content-addressed.md), and handed out only
 * once the whole file matched its hash. The same bytes asked for as a URL, a
 * .deb or a manifest file are one blob.
 */
import { DEFAULT_CHUNK_SIZE } from '../../manifests/chunker.js';
import { HEX64_RE } from '../../manifests/schema.js';
import { ShoalError } from '../errors.js';
import type { OriginClient } from '../origin/origin-client.js';
import type { Blob } from '../store/blob.js';
import type { BlobDownload } from '../swarm/downloader.js';
import type { Swarm } from '../swarm/swarm.js';

/** What asked for a blob, for the savings figures. */
export const KINDS = ['native', 'url', 'apt', 'oci'] as const;
export type Kind = (typeof KINDS)[number];

/** Every learned blob is cut the same way, so every daemon's chunk i is the same bytes. */
export const CA_CHUNK_SIZE = DEFAULT_CHUNK_SIZE;

export interface ContentRef {
  sha256: string;
  /** Unknown: asked of the origin (HEAD) first. */
  size?: number;
  urls: string[];
  kind: Kind;
}

export interface ContentDeps {
  swarm: Swarm;
  origin: Pick<OriginClient, 'probeSize'>;
}

export class Content {
  constructor(private d: ContentDeps) {}

  /** The blob if it is cached here complete. */
  cached(sha256: string): Blob | undefined {
    const b = this.d.swarm.store.get(sha256);
    return b?.complete ? b : undefined;
  }

  /** The complete blob if cached (a local hit), else the site download that will complete it. */
  async acquire(ref: ContentRef, opts: { override?: boolean; signal?: AbortSignal } = {}): Promise<{ blob: Blob; download?: BlobDownload }> {
    if (!HEX64_RE.test(ref.sha256)) throw new ShoalError('bad-request', 'sha256 must be 64 lowercase hex characters');
    if (ref.size !== undefined && (!Number.isSafeInteger(ref.size) || ref.size < 0)) throw new ShoalError('bad-request', 'size must be a non-negative integer');
    const have = this.d.swarm.store.get(ref.sha256);
    if (have?.complete) {
      if (ref.size !== undefined && have.size !== ref.size) throw new ShoalError('inconsistent', `blob ${ref.sha256.slice(0, 12)} is ${have.size} bytes, not ${ref.size}`);
      return { blob: have };
    }
    let size = ref.size ?? have?.size ?? this.d.swarm.get(ref.sha256)?.blob.size;
    if (size === undefined) {
      if (!ref.urls.length) throw new ShoalError('not-found', `blob ${ref.sha256.slice(0, 12)} is not cached and no URL was given`);
      size = await this.d.origin.probeSize(ref.urls[0]!, opts.signal);
    }
    const download = await this.d.swarm.download({ sha256: ref.sha256, size, chunkSize: CA_CHUNK_SIZE, chunks: [], learned: true }, ref.urls, ref.kind);
    if (opts.override) download.override = true;
    return { blob: download.blob, download };
  }

  /** Resolves with the blob once it is complete (proven whole); rejects with the download's error. */
  async complete(ref: ContentRef, opts: { override?: boolean; signal?: AbortSignal } = {}): Promise<{ blob: Blob; local: boolean }> {
    const { blob, download } = await this.acquire(ref, opts);
    if (!download) return { blob, local: true };
    await (opts.signal ? Promise.race([download.done, aborted(opts.signal)]) : download.done);
    if (!download.blob.complete) throw download.error ?? new ShoalError('unavailable', `blob ${ref.sha256.slice(0, 12)} did not complete`);
    return { blob: download.blob, local: false };
  }
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}
