/**
 * Typed client of the daemon's agent API, over loopback HTTP or the unix
 * socket. The CLI and tests use it; update agents can embed it.
 */
import { Client, Pool, type Dispatcher } from 'undici';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ShoalError, type ErrorCode } from '../daemon/errors.js';
import type { ArtifactView, CreateFetch, ErrorBody, FetchEvent, FetchStatus, GcResult, ImportResult, PeerView, PinResult, RemoveResult, StatsView, StatusView } from '../daemon/admin/api.js';

export type { ArtifactView, FetchEvent, FetchStatus, PeerView, StatusView };

export const DEFAULT_API = 'http://127.0.0.1:7401';

function errorOf(status: number, text: string): ShoalError {
  let err: { code?: string; message?: string } | undefined;
  try { err = (JSON.parse(text) as Partial<ErrorBody>).error; } catch { /* not JSON */ }
  return new ShoalError((err?.code as ErrorCode) ?? 'internal', err?.message ?? `HTTP ${status}`);
}

export class AgentClient {
  private d: Dispatcher;
  readonly where: string;

  constructor(opts: { api?: string; socket?: string } = {}) {
    if (opts.socket) {
      this.d = new Client('http://localhost', { socketPath: opts.socket });
      this.where = `unix:${opts.socket}`;
    } else {
      const api = opts.api ?? process.env.SHOAL_API ?? DEFAULT_API;
      try {
        this.d = new Pool(new URL(api).origin, { connections: 4 });
      } catch {
        throw new ShoalError('usage', `--api must be a URL like ${DEFAULT_API}, got "${api}"`);
      }
      this.where = api;
    }
  }

  private async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.d.request({ path, method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined, headersTimeout: 30_000, bodyTimeout: 30_000 });
    } catch (e) {
      throw new ShoalError('daemon-unreachable', `cannot reach shoald at ${this.where}: ${(e as Error).message}`);
    }
    const text = await res.body.text();
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new ShoalError('internal', `shoald answered ${res.statusCode} with a body that is not JSON`);
    }
    if (res.statusCode >= 400) {
      const err = (data as { error?: { code?: string; message?: string } }).error;
      throw new ShoalError((err?.code as ErrorCode) ?? 'internal', err?.message ?? `HTTP ${res.statusCode}`);
    }
    return data as T;
  }

  createFetch(req: CreateFetch): Promise<FetchStatus> {
    return this.call('POST', '/api/v1/fetches', req);
  }

  getFetch(id: string): Promise<FetchStatus> {
    return this.call('GET', `/api/v1/fetches/${encodeURIComponent(id)}`);
  }

  /**
   * Waits until the fetch is done (resolves) or failed (throws its error),
   * following its event stream, which tells the end the moment it happens;
   * if the stream breaks off, polls every `intervalMs`.
   */
  async waitFetch(id: string, opts: { intervalMs?: number; onProgress?: (s: FetchStatus) => void; signal?: AbortSignal } = {}): Promise<FetchStatus> {
    const final = (s: FetchStatus) => {
      if (s.state === 'done') return s;
      if (s.state === 'failed' || s.state === 'cancelled') throw new ShoalError((s.error?.code as ErrorCode) ?? 'internal', s.error?.message ?? `fetch ${s.state}`);
      return undefined;
    };
    try {
      for await (const e of this.fetchEvents(id, { intervalMs: opts.intervalMs, signal: opts.signal })) {
        opts.onProgress?.(e.data);
        const s = final(e.data);
        if (s) return s;
      }
    } catch (e) {
      if (e instanceof ShoalError && e.code !== 'daemon-unreachable') throw e;
      opts.signal?.throwIfAborted();
    }
    for (;;) {
      opts.signal?.throwIfAborted();
      const s = await this.getFetch(id);
      opts.onProgress?.(s);
      if (final(s)) return s;
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
    }
  }

  cancelFetch(id: string): Promise<FetchStatus> {
    return this.call('DELETE', `/api/v1/fetches/${encodeURIComponent(id)}`);
  }

  /** A fetch's progress events (server-sent), ending with its final state. */
  async *fetchEvents(id: string, opts: { intervalMs?: number; signal?: AbortSignal } = {}): AsyncGenerator<FetchEvent> {
    let res: Dispatcher.ResponseData;
    const interval = opts.intervalMs === undefined ? '' : `?interval=${Math.min(5000, Math.max(50, Math.round(opts.intervalMs)))}`;
    try {
      res = await this.d.request({ path: `/api/v1/fetches/${encodeURIComponent(id)}/events${interval}`, method: 'GET', headersTimeout: 30_000, bodyTimeout: 0, ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (e) {
      throw new ShoalError('daemon-unreachable', `cannot reach shoald at ${this.where}: ${(e as Error).message}`);
    }
    if (res.statusCode !== 200) {
      const err = (JSON.parse(await res.body.text()) as { error?: { code?: string; message?: string } }).error;
      throw new ShoalError((err?.code as ErrorCode) ?? 'internal', err?.message ?? `HTTP ${res.statusCode}`);
    }
    let buf = '';
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      buf += chunk.toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data) yield { event: event as FetchEvent['event'], data: JSON.parse(data) as FetchEvent['data'] };
      }
    }
  }

  async artifacts(): Promise<ArtifactView[]> {
    return (await this.call<{ artifacts: ArtifactView[] }>('GET', '/api/v1/artifacts')).artifacts;
  }

  pin(name: string, version: string, pinned = true): Promise<PinResult> {
    return this.call('POST', `/api/v1/artifacts/${encodeURIComponent(name)}/${encodeURIComponent(version)}/${pinned ? 'pin' : 'unpin'}`);
  }

  removeArtifact(name: string, version: string): Promise<RemoveResult> {
    return this.call('DELETE', `/api/v1/artifacts/${encodeURIComponent(name)}/${encodeURIComponent(version)}`);
  }

  gc(targetBytes?: number): Promise<GcResult> {
    return this.call('POST', '/api/v1/gc', targetBytes === undefined ? {} : { targetBytes });
  }

  /** Streams an export archive of the named cached artifacts into `out`. */
  async exportTo(refs: Array<{ name: string; version: string }>, out: NodeJS.WritableStream): Promise<void> {
    const q = refs.map((r) => `artifact=${encodeURIComponent(`${r.name}/${r.version}`)}`).join('&');
    let res: Dispatcher.ResponseData;
    try {
      res = await this.d.request({ path: `/api/v1/export?${q}`, method: 'GET', headersTimeout: 30_000, bodyTimeout: 120_000 });
    } catch (e) {
      throw new ShoalError('daemon-unreachable', `cannot reach shoald at ${this.where}: ${(e as Error).message}`);
    }
    if (res.statusCode !== 200) throw errorOf(res.statusCode, await res.body.text());
    await pipeline(res.body, out);
  }

  /** Sends an archive to the daemon, which verifies everything before keeping any of it. */
  async importFrom(body: Readable): Promise<ImportResult> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.d.request({ path: '/api/v1/import', method: 'POST', body, headers: { 'content-type': 'application/x-tar' }, headersTimeout: 0, bodyTimeout: 120_000 });
    } catch (e) {
      throw new ShoalError('daemon-unreachable', `cannot reach shoald at ${this.where}: ${(e as Error).message}`);
    }
    const text = await res.body.text();
    if (res.statusCode !== 200) throw errorOf(res.statusCode, text);
    return JSON.parse(text) as ImportResult;
  }

  async peers(): Promise<PeerView[]> {
    return (await this.call<{ peers: PeerView[] }>('GET', '/api/v1/peers')).peers;
  }

  status(): Promise<StatusView> {
    return this.call('GET', '/api/v1/status');
  }

  /** Savings of this daemon and of the site's members over a period ("24h", "7d"). */
  stats(period = '24h'): Promise<StatsView> {
    return this.call('GET', `/api/v1/stats?period=${encodeURIComponent(period)}`);
  }

  /** Streams a verified file of a cached artifact. */
  async openFile(name: string, version: string, filePath: string): Promise<{ body: Readable; size: number; sha256: string }> {
    return this.open(`/api/v1/artifacts/${encodeURIComponent(name)}/${encodeURIComponent(version)}/files/${filePath.split('/').map(encodeURIComponent).join('/')}`);
  }

  /** A complete cached blob by its SHA-256 (the local URL form, without an origin URL). */
  openBlob(sha256: string): Promise<{ body: Readable; size: number; sha256: string }> {
    return this.open(`/sha256/${encodeURIComponent(sha256)}`);
  }

  private async open(p: string): Promise<{ body: Readable; size: number; sha256: string }> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.d.request({ path: p, method: 'GET', headersTimeout: 30_000, bodyTimeout: 60_000 });
    } catch (e) {
      throw new ShoalError('daemon-unreachable', `cannot reach shoald at ${this.where}: ${(e as Error).message}`);
    }
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      let err: { code?: string; message?: string } | undefined;
      try { err = (JSON.parse(text) as Partial<ErrorBody>).error; } catch { /* not JSON */ }
      throw new ShoalError((err?.code as ErrorCode) ?? 'internal', err?.message ?? `HTTP ${res.statusCode}`);
    }
    return { body: res.body as unknown as Readable, size: Number(res.headers['content-length']), sha256: String(res.headers['x-shoal-sha256']) };
  }

  async close() {
    await this.d.close();
  }
}
