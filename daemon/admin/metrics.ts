/**
 * Every Prometheus metric of a daemon, defined in one place. Names follow
 * Prometheus conventions: base units, `_bytes`, `_seconds`, `_total` on
 * counters, and only bounded label values (no peer ids, hashes or URLs).
 * One registry per daemon, so several daemons can share a process (the demo).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { SOFTWARE } from '../peers/wire.js';
import { KINDS } from '../frontends/content.js';

export type Source = 'origin' | 'peer';

const SIZE_CLASSES: Array<[number, string]> = [[16 << 20, 'lt16MiB'], [256 << 20, 'lt256MiB'], [4 * 2 ** 30, 'lt4GiB']];

/** A bounded label for an artifact size. */
export function sizeClass(bytes: number): string {
  for (const [limit, name] of SIZE_CLASSES) if (bytes < limit) return name;
  return 'ge4GiB';
}

/** HTTP status codes as labels: the code itself for known classes, "error" when no answer came. */
export function codeLabel(status: number | undefined): string {
  return status !== undefined && Number.isInteger(status) && status >= 100 && status < 600 ? String(status) : 'error';
}

export interface MetricSources {
  peers(): { healthy: number; banned: number };
  cacheBytes(): number;
  cacheCapacity(): number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly downloadBytes: Counter<'source' | 'kind'>;
  readonly localBytes: Counter<'kind'>;
  readonly unsharedBytes: Counter<'kind'>;
  readonly uploadBytes: Counter;
  readonly chunksVerified: Counter;
  readonly verifyFailures: Counter<'source'>;
  readonly leasesGranted: Counter;
  readonly leasesExpired: Counter;
  readonly fetches: Counter<'result'>;
  readonly fetchDuration: Histogram<'size_class'>;
  readonly fetchesInflight: Gauge;
  readonly originRequests: Counter<'code'>;
  readonly cacheEvictions: Counter;
  readonly chunksDropped: Counter;
  readonly coordinatorsDistrusted: Counter;
  readonly scrubChunks: Counter<'result'>;
  readonly scrubBytes: Counter;

  constructor(src: MetricSources) {
    const r = [this.registry];
    this.downloadBytes = new Counter({ name: 'shoal_download_bytes_total', help: 'Verified bytes stored, by where they came from and what asked for them (native, url, apt, oci).', labelNames: ['source', 'kind'], registers: r });
    this.unsharedBytes = new Counter({ name: 'shoal_unshared_bytes_total', help: 'Bytes passed from the origin to a local client without a known hash (neither cached nor shared), by kind.', labelNames: ['kind'], registers: r });
    this.localBytes = new Counter({ name: 'shoal_local_bytes_total', help: 'Bytes handed to a local client (agent, apt, HTTP) from a blob already complete in the cache, by kind.', labelNames: ['kind'], registers: r });
    this.uploadBytes = new Counter({ name: 'shoal_upload_bytes_total', help: 'Bytes served to peers.', registers: r });
    this.chunksVerified = new Counter({ name: 'shoal_chunks_verified_total', help: 'Chunks that matched the signed manifest and were stored.', registers: r });
    this.verifyFailures = new Counter({ name: 'shoal_chunk_verify_failures_total', help: 'Chunks whose bytes did not match the signed manifest.', labelNames: ['source'], registers: r });
    new Gauge({
      name: 'shoal_peers', help: 'Known peers by state.', labelNames: ['state'], registers: r,
      collect() {
        const p = src.peers();
        this.set({ state: 'healthy' }, p.healthy);
        this.set({ state: 'banned' }, p.banned);
      },
    });
    this.leasesGranted = new Counter({ name: 'shoal_leases_granted_total', help: 'Origin leases granted by this daemon as coordinator (chunks).', registers: r });
    this.leasesExpired = new Counter({ name: 'shoal_leases_expired_total', help: 'Origin leases that expired or lost their holder before completion (chunks).', registers: r });
    this.fetches = new Counter({ name: 'shoal_fetches_total', help: 'Finished fetch jobs by result.', labelNames: ['result'], registers: r });
    this.fetchDuration = new Histogram({
      name: 'shoal_fetch_duration_seconds', help: 'Time from request to verified artifact, by artifact size class.', labelNames: ['size_class'], registers: r,
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600],
    });
    this.fetchesInflight = new Gauge({ name: 'shoal_fetches_inflight', help: 'Fetch jobs in progress.', registers: r });
    this.originRequests = new Counter({ name: 'shoal_origin_requests_total', help: 'Requests to the origin by HTTP status ("error": no answer).', labelNames: ['code'], registers: r });
    new Gauge({ name: 'shoal_cache_bytes', help: 'Bytes of blobs in the cache.', registers: r, collect() { this.set(src.cacheBytes()); } });
    new Gauge({ name: 'shoal_cache_capacity_bytes', help: 'Cache budget (cacheMaxBytes).', registers: r, collect() { this.set(src.cacheCapacity()); } });
    this.cacheEvictions = new Counter({ name: 'shoal_cache_evictions_total', help: 'Blobs evicted from the cache.', registers: r });
    this.chunksDropped = new Counter({ name: 'shoal_chunks_dropped_total', help: 'Stored chunks whose bytes no longer matched their hash (found on first read after a restart or by the scrub); dropped and fetched again when wanted.', registers: r });
    this.scrubChunks = new Counter({ name: 'shoal_scrub_chunks_total', help: 'Stored chunks re-hashed by the scrub job, by result.', labelNames: ['result'], registers: r });
    this.scrubBytes = new Counter({ name: 'shoal_scrub_bytes_total', help: 'Bytes re-hashed by the scrub job.', registers: r });
    this.chunksDropped.inc(0);
    this.coordinatorsDistrusted = new Counter({ name: 'shoal_coordinator_distrusted_total', help: 'Times a blob\'s coordinator answered wrongly, granted a chunk twice or let a download starve, and the next in HRW order was asked instead.', registers: r });
    for (const result of ['ok', 'bad']) this.scrubChunks.inc({ result }, 0);
    new Gauge({ name: 'shoal_build_info', help: 'Build information (always 1).', labelNames: ['version', 'node_version'], registers: r })
      .set({ version: SOFTWARE.split('/')[1]!, node_version: process.version }, 1);
    for (const s of ['origin', 'peer'] as const) {
      for (const kind of KINDS) this.downloadBytes.inc({ source: s, kind }, 0);
      this.verifyFailures.inc({ source: s }, 0);
    }
    for (const kind of KINDS) { this.localBytes.inc({ kind }, 0); this.unsharedBytes.inc({ kind }, 0); }
    collectDefaultMetrics({ register: this.registry });
    // prom-client names these gauges with `_total`, which promtool rightly rejects; the same
    // values stay available, per type, in the nodejs_active_handles/requests/resources gauges.
    for (const bad of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(bad);
  }

  /** A scrub run finished. */
  scrubbed(r: { chunks: number; bytes: number; bad: number }) {
    this.scrubChunks.inc({ result: 'ok' }, r.chunks - r.bad);
    this.scrubChunks.inc({ result: 'bad' }, r.bad);
    this.scrubBytes.inc(r.bytes);
  }

  private hooks: Array<() => void> = [];

  /** Runs before every scrape: for values that live elsewhere and are copied in. */
  onScrape(fn: () => void) {
    this.hooks.push(fn);
  }

  text(): Promise<string> {
    for (const h of this.hooks) h();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
