/**
 * The upstream origin, over undici with its own connection pool and
 * concurrency cap (origin load is budgeted apart from peer traffic).
 * Ranged GETs are resumed by our own loop from the exact byte where a body
 * broke off: undici's retry interceptor can stall when resuming bodies under
 * backpressure, so it is not used for bodies.
 */
import { Agent, interceptors, type Dispatcher } from 'undici';
import { ShoalError } from '../errors.js';
import { discard } from '../common/http-util.js';
import { RateFloor, Semaphore, sleep, TokenBucket } from '../common/limits.js';
import { systemClock, type Clock } from '../common/clock.js';

export interface OriginOptions {
  maxBytesPerSec: number;
  concurrency: number;
  requestTimeoutMs: number;
  maxAttempts?: number;
  /** A body slower than this over a window is cut with origin-slow (0 = no floor). */
  minBytesPerSec?: number;
  minRateWindowMs?: number;
  clock?: Clock;
  /** Called with every body byte count received from the origin (metrics, accounting). */
  onBytes?: (n: number) => void;
  /** Every origin answer's status, or undefined when a request got no answer (reset, timeout). */
  onResponse?: (status: number | undefined) => void;
}

/**
 * Credentials for some origins (a registry's bearer tokens): extra request headers per URL,
 * and a 401's challenge answered once before the request is tried again.
 */
export interface OriginCredentials {
  /** Headers to add for url (authorization, accept), or undefined when url is not this provider's. */
  headers(url: string): Record<string, string> | undefined;
  /** The WWW-Authenticate of a 401 for url: resolves true when new credentials are worth one more try. */
  challenged(url: string, wwwAuthenticate: string, signal?: AbortSignal): Promise<boolean>;
}

/** HTTP cache validators of a document. */
export interface Validators {
  etag?: string;
  lastModified?: string;
}

const CONTENT_RANGE_RE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;
/** URLs remembered as ignoring Range (most recently seen kept). */
const MAX_NO_RANGE_URLS = 4096;

export class OriginClient {
  readonly bucket: TokenBucket;
  private readonly sem: Semaphore;
  private readonly dispatcher: Dispatcher;
  private readonly agent: Agent;
  private readonly clock: Clock;
  private readonly noRange = new Set<string>();
  private readonly credentials: OriginCredentials[] = [];

  constructor(private opts: OriginOptions) {
    this.clock = opts.clock ?? systemClock;
    this.bucket = new TokenBucket(opts.maxBytesPerSec);
    this.sem = new Semaphore(opts.concurrency);
    this.agent = new Agent({
      connections: opts.concurrency + 2,
      headersTimeout: opts.requestTimeoutMs,
      bodyTimeout: opts.requestTimeoutMs,
      connect: { timeout: Math.min(opts.requestTimeoutMs, 10_000) },
    });
    this.dispatcher = this.agent.compose(interceptors.redirect({ maxRedirections: 3 }));
  }

  /** Adds a credentials provider; the first whose headers() answers for a URL applies. */
  addCredentials(c: OriginCredentials) {
    this.credentials.push(c);
  }

  /**
   * Every origin request: the credentials' headers merged in (a caller's own headers win),
   * and a 401 answered by its provider's challenge once. Redirects to another origin drop
   * Authorization (undici's redirect handler), so a storage backend never sees a token.
   */
  private async send(url: string, method: 'GET' | 'HEAD', headers: Record<string, string>, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    for (let attempt = 0; ; attempt++) {
      let provider: OriginCredentials | undefined;
      let extra: Record<string, string> | undefined;
      for (const c of this.credentials) if ((extra = c.headers(url))) { provider = c; break; }
      const res = await this.dispatcher.request({ ...target(url), method, ...(signal ? { signal } : {}), headers: { ...extra, ...headers } });
      this.opts.onResponse?.(res.statusCode);
      const challenge = res.headers['www-authenticate'];
      if (res.statusCode === 401 && provider && attempt === 0 && typeof challenge === 'string') {
        discard(res.body);
        if (await provider.challenged(url, challenge, signal)) continue;
        throw httpError(url, 401);
      }
      return res;
    }
  }

  /** A small document (manifest, channel) with a hard size cap. */
  async fetchDocument(url: string, maxBytes: number, signal?: AbortSignal): Promise<Buffer> {
    const r = await this.document(url, maxBytes, { accept: 'application/json' }, signal);
    return r.body!;
  }

  /**
   * A credential document (a registry token): outside the concurrency cap, because the
   * requests waiting for it hold slots of that cap.
   */
  async fetchCredential(url: string, maxBytes: number, signal?: AbortSignal): Promise<Buffer> {
    return (await this.document(url, maxBytes, { accept: 'application/json' }, signal, false)).body!;
  }

  /** A small document asked for with the caller's headers (a registry manifest by tag): its body and the answer's headers. */
  async fetchWith(url: string, maxBytes: number, headers: Record<string, string>, signal?: AbortSignal): Promise<{ body: Buffer; headers: Dispatcher.ResponseData['headers'] }> {
    const r = await this.document(url, maxBytes, headers, signal);
    return { body: r.body!, headers: r.headers };
  }

  /**
   * A small document fetched again only if it changed (If-None-Match / If-Modified-Since):
   * status 304 and no body when the validators still hold.
   */
  async revalidate(url: string, maxBytes: number, known: Validators, signal?: AbortSignal): Promise<{ status: 200 | 304; body?: Buffer } & Validators> {
    const headers: Record<string, string> = {};
    if (known.etag) headers['if-none-match'] = known.etag;
    if (known.lastModified) headers['if-modified-since'] = known.lastModified;
    return this.document(url, maxBytes, headers, signal);
  }

  private async document(url: string, maxBytes: number, headers: Record<string, string>, signal?: AbortSignal, capped = true): Promise<{ status: 200 | 304; body?: Buffer; headers: Dispatcher.ResponseData['headers'] } & Validators> {
    checkUrl(url);
    const release = capped ? await this.sem.acquire(signal) : () => {};
    try {
      // Few attempts: an agent is waiting for an answer, and documents are cheap to ask for again.
      return await this.retrying(url, signal, 3, async () => {
        const res = await this.send(url, 'GET', headers, signal);
        const v: Validators = {
          ...(typeof res.headers.etag === 'string' ? { etag: res.headers.etag } : {}),
          ...(typeof res.headers['last-modified'] === 'string' ? { lastModified: res.headers['last-modified'] } : {}),
        };
        if (res.statusCode === 304 && (headers['if-none-match'] || headers['if-modified-since'])) {
          discard(res.body);
          return { status: 304 as const, headers: res.headers, ...v };
        }
        if (res.statusCode !== 200) {
          discard(res.body);
          throw httpError(url, res.statusCode);
        }
        const parts: Buffer[] = [];
        let n = 0;
        for await (const b of res.body as AsyncIterable<Buffer>) {
          n += b.length;
          if (n > maxBytes) {
            discard(res.body);
            throw new ShoalError('too-large', `${url}: document larger than ${maxBytes} bytes`);
          }
          parts.push(b);
        }
        return { status: 200 as const, body: Buffer.concat(parts), headers: res.headers, ...v };
      });
    } finally {
      release();
    }
  }

  /**
   * One request passed through unchanged (a file with no known hash): the answer's status,
   * headers and body stream, for the caller to relay with backpressure. Not under the
   * concurrency cap (a long unshared download must not hold back shared ones) and not retried.
   */
  async passThrough(url: string, method: 'GET' | 'HEAD', headers: Record<string, string>, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    checkUrl(url);
    return this.send(url, method, headers, signal);
  }

  /** This URL answered a range request with the whole body: read it once, whole, not range by range. */
  /** The size of the file at url, from a HEAD (for a blob asked for by hash and URL alone). */
  async probeSize(url: string, signal?: AbortSignal): Promise<number> {
    checkUrl(url);
    const release = await this.sem.acquire(signal);
    try {
      return await this.retrying(url, signal, 3, async () => {
        const res = await this.send(url, 'HEAD', { 'accept-encoding': 'identity' }, signal);
        discard(res.body);
        if (res.statusCode !== 200) throw httpError(url, res.statusCode);
        const n = Number(res.headers['content-length']);
        if (!Number.isSafeInteger(n) || n < 0) throw new ShoalError('origin-error', `${url}: HEAD gave no usable Content-Length; give the size`);
        return n;
      });
    } finally {
      release();
    }
  }

  ignoresRange(url: string): boolean {
    return this.noRange.has(url);
  }

  private noteNoRange(url: string) {
    this.noRange.delete(url);
    this.noRange.add(url);
    if (this.noRange.size > MAX_NO_RANGE_URLS) this.noRange.delete(this.noRange.values().next().value!);
  }

  /**
   * Streams bytes [start, end] (inclusive) of url to onData, in order, exactly
   * once each, resuming after errors from the first byte not yet delivered.
   */
  async fetchRange(url: string, start: number, end: number, onData: (b: Buffer) => Promise<void> | void, signal?: AbortSignal, opts: { whole?: boolean } = {}): Promise<void> {
    checkUrl(url);
    const release = await this.sem.acquire(signal);
    let pos = start;
    try {
      await this.retrying(url, signal, this.opts.maxAttempts ?? 8, async () => {
        const before = pos;
        try {
          await this.oneRangeRequest(url, () => pos, end, async (b) => {
            pos += b.length;
            await onData(b);
          }, signal, !!opts.whole);
        } catch (e) {
          if (pos > before) (e as { progressed?: boolean }).progressed = true;
          throw e;
        }
      });
    } finally {
      release();
    }
  }

  /** `whole`: the caller knows the origin ignores Range and reads the body up to `end` for its bytes from pos. */
  private async oneRangeRequest(url: string, pos: () => number, end: number, deliver: (b: Buffer) => Promise<void>, signal: AbortSignal | undefined, whole: boolean) {
    const from = pos();
    // A body below the rate floor is cut (origin-slow): the run goes elsewhere, or later.
    const min = this.opts.minBytesPerSec ?? 0;
    const cut = new AbortController();
    const floor = min > 0 ? new RateFloor(min, () => this.clock.now()) : undefined;
    const windowMs = this.opts.minRateWindowMs ?? 30_000;
    let timer: ReturnType<Clock['setTimeout']> | undefined;
    const judge = () => {
      timer = this.clock.setTimeout(() => {
        if (floor!.check()) cut.abort(new ShoalError('origin-slow', `${url}: sent less than ${min} bytes/s for ${windowMs} ms`));
        else judge();
      }, windowMs);
      timer.unref?.();
    };
    if (floor) judge();
    const sig = signal ? AbortSignal.any([signal, cut.signal]) : cut.signal;
    try {
      const res = await this.send(url, 'GET', { range: `bytes=${from}-${end}`, 'accept-encoding': 'identity' }, sig);
      let skip = 0;
      if (res.statusCode === 206) {
        const cr = CONTENT_RANGE_RE.exec(String(res.headers['content-range'] ?? ''));
        if (!cr || Number(cr[1]) !== from || Number(cr[2]) !== end) {
          discard(res.body);
          throw new ShoalError('origin-wrong-range', `${url}: Content-Range "${res.headers['content-range']}" does not match bytes ${from}-${end}`);
        }
      } else if (res.statusCode === 200) {
        this.noteNoRange(url);
        // The whole body, unasked: unless it is what we asked for or the caller reads it whole,
        // stop now and let the caller lease all it can (reading from byte 0 once per run costs size² / run).
        if (!whole && !(from === 0 && Number(res.headers['content-length']) === end + 1)) {
          discard(res.body);
          throw new ShoalError('origin-no-range', `${url}: the origin ignores Range`);
        }
        skip = from; // read past what we already have
      } else {
        discard(res.body);
        throw httpError(url, res.statusCode);
      }
      let remaining = end - from + 1;
      try {
        for await (const raw of res.body as AsyncIterable<Buffer>) {
          floor?.add(raw.length);
          floor?.ownBegin(); // our limiter and our disk are not the origin's slowness
          this.opts.onBytes?.(raw.length);
          let b = raw;
          if (skip > 0) {
            const s = Math.min(skip, b.length);
            skip -= s;
            b = b.subarray(s);
            if (b.length === 0) { floor?.ownEnd(); continue; }
          }
          if (b.length > remaining) b = b.subarray(0, remaining);
          await this.bucket.take(raw.length, signal);
          remaining -= b.length;
          await deliver(b);
          floor?.ownEnd();
          if (remaining === 0) break;
        }
      } finally {
        if (remaining === 0) discard(res.body); // stop a 200 body (or an over-long one) at our range end
      }
      if (remaining > 0) throw new ShoalError('origin-error', `${url}: body ended ${remaining} bytes early`);
    } catch (e) {
      throw cut.signal.aborted && !signal?.aborted ? cut.signal.reason : e;
    } finally {
      this.clock.clearTimeout(timer);
    }
  }

  /** Retries transient failures with exponential backoff; attempts reset whenever bytes arrived. */
  private async retrying<T>(url: string, signal: AbortSignal | undefined, max: number, fn: () => Promise<T>): Promise<T> {
    let attempt = 0;
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        if (signal?.aborted) throw signal.reason ?? e;
        if (!(e instanceof ShoalError)) this.opts.onResponse?.(undefined); // no HTTP answer at all
        if ((e as { progressed?: boolean }).progressed) attempt = 0;
        attempt++;
        if (!transient(e) || attempt >= max) {
          throw e instanceof ShoalError ? e : new ShoalError('origin-error', `${url}: ${(e as Error).message}`, { cause: e });
        }
        await sleep(Math.min(5000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2), signal);
      }
    }
  }

  async close() {
    await this.agent.close();
  }
}

function target(url: string) {
  const u = new URL(url);
  return { origin: u.origin, path: `${u.pathname}${u.search}` };
}

function checkUrl(url: string) {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ShoalError('bad-request', `not a URL: ${url}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ShoalError('bad-request', `only http(s) URLs can be fetched: ${url}`);
}

class HttpStatusError extends ShoalError {
  constructor(url: string, readonly status: number) {
    super(status === 404 ? 'not-found' : 'origin-error', `${url}: HTTP ${status}`);
  }
}

function httpError(url: string, status: number) {
  return new HttpStatusError(url, status);
}

function transient(e: unknown): boolean {
  if (e instanceof HttpStatusError) return e.status >= 500 || e.status === 429 || e.status === 408;
  if (e instanceof ShoalError) return e.code === 'origin-error'; // a wrong Content-Range (origin-wrong-range) would come again
  return true; // resets, timeouts, socket errors
}
