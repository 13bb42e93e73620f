/**
 * Scheduled work with node-cron, every job with noOverlap: channel watch (a
 * newer signed version is prefetched by the site: the swarm keeps it to one
 * origin pull), the upload rate by time of day, and cache GC between the high
 * and low watermarks. All of it from config, and rebuilt on reload.
 */
import cron, { type ScheduledTask } from 'node-cron';
import type { Config } from '../config/config.js';
import type { FetchManager } from '../fetch/fetches.js';
import { TokenBucket } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { DaemonState } from '../fetch/state.js';
import type { BlobStore } from '../store/blob-store.js';
import { inWindow, parseWindow } from './windows.js';

export interface JobDeps {
  config: Config;
  fetches: FetchManager;
  store: BlobStore;
  state: DaemonState;
  uploadBucket: TokenBucket;
  log: Logger;
  onScrub?(r: ScrubResult): void;
}

export interface ScrubResult {
  chunks: number;
  bytes: number;
  bad: number;
}

export class Jobs {
  private tasks: ScheduledTask[] = [];

  constructor(private d: JobDeps) {}

  start() {
    const c = this.d.config;
    const opts = (name: string, jitterMs = 0) => ({ name, noOverlap: true, unref: true, ...(jitterMs ? { maxRandomDelay: jitterMs } : {}) });
    for (const ch of c.channels) {
      this.tasks.push(cron.schedule(ch.cron ?? c.channelCron, () => this.watchChannel(ch.url), opts(`channel ${ch.url}`, c.channelJitterMs)));
    }
    this.applyUploadRate();
    if (c.uploadSchedule.length) this.tasks.push(cron.schedule('* * * * *', () => this.applyUploadRate(), opts('upload schedule')));
    this.tasks.push(cron.schedule(c.gcCron, () => this.gc(), opts('cache gc')));
    if (c.scrubCron) this.tasks.push(cron.schedule(c.scrubCron, () => this.scrub(), opts('scrub')));
  }

  private scrubbing: AbortController | undefined;

  stop() {
    for (const t of this.tasks) void t.destroy();
    this.tasks = [];
    this.scrubbing?.abort();
  }

  /**
   * Re-hashes every stored chunk against its expected hash at most
   * scrubMaxBytesPerSec, dropping the ones that changed on disk (bit rot, a
   * tampered cache file), so they are never served and are fetched again.
   */
  async scrub(): Promise<ScrubResult | undefined> {
    if (this.scrubbing) return undefined;
    const ctl = (this.scrubbing = new AbortController());
    const t0 = Date.now();
    try {
      const r = await this.d.store.scrub(new TokenBucket(this.d.config.scrubMaxBytesPerSec), ctl.signal);
      this.d.onScrub?.(r);
      this.d.log(r.bad ? 'warn' : 'info', 'scrub done', { ...r, seconds: Math.round((Date.now() - t0) / 1000) });
      return r;
    } catch (e) {
      if (!ctl.signal.aborted) this.d.log('warn', 'scrub failed', { error: (e as Error).message });
      return undefined;
    } finally {
      this.scrubbing = undefined;
    }
  }

  restart() {
    this.stop();
    this.start();
  }

  /** Polls a channel; a newer signed version than the accepted one starts a fetch (once). */
  async watchChannel(url: string): Promise<'started' | 'current' | 'busy' | 'failed'> {
    try {
      if (this.d.fetches.channelJobRunning(url)) return 'busy';
      const ch = await this.d.fetches.peekChannel(url);
      const last = this.d.state.lastChannelSequence(ch.name, ch.channel);
      if (last !== undefined && ch.sequence <= last) return 'current';
      const job = this.d.fetches.create({ channelUrl: url });
      this.d.log('info', 'channel moved: prefetching', { channel: ch.channel, name: ch.name, sequence: ch.sequence, job: job.id });
      return 'started';
    } catch (e) {
      this.d.log('warn', 'channel watch failed', { url, error: (e as Error).message });
      return 'failed';
    }
  }

  /** The upload limit for this time of day: the first matching window, else uploadMaxBytesPerSec. */
  applyUploadRate(at = new Date()): number {
    const c = this.d.config;
    const hit = c.uploadSchedule.find((s) => inWindow(parseWindow(s.window), at));
    const rate = hit ? hit.bytesPerSec : c.uploadMaxBytesPerSec;
    this.d.uploadBucket.setRate(rate);
    return rate;
  }

  /** A collection that began above the high watermark goes on, run after run, until the low one is reached. */
  private gcUnfinished = false;

  /** Over the high watermark: evict least recently used, unpinned, unused blobs down to the low one. */
  async gc(): Promise<{ freed: number; reached: boolean } | undefined> {
    const c = this.d.config;
    const used = this.d.store.usedBytes();
    const low = Math.floor(c.cacheLowWatermark * c.cacheMaxBytes);
    if (used <= c.cacheHighWatermark * c.cacheMaxBytes && !(this.gcUnfinished && used > low)) {
      this.gcUnfinished = false;
      return undefined;
    }
    const r = await this.d.store.evictDownTo(low);
    // Blobs in use right now could not go: try again next run rather than wait for the high mark.
    this.gcUnfinished = !r.reached;
    this.d.log('info', 'cache gc', { freedBytes: r.freed, usedBytes: this.d.store.usedBytes(), reachedLowWatermark: r.reached });
    return r;
  }
}
