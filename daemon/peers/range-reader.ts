/**
 * Byte ranges of a blob from a peer, read by the kernel straight into the
 * caller's chunk buffer.
 *
 * Why not undici for this one request (it serves every other peer and origin
 * request): its HTTP/1.1 client reads each socket chunk into a fresh 64 KiB
 * buffer, copies it into its WASM parser's memory and hands the body on as
 * views of it, which the swarm then copies into the chunk buffer: three copies,
 * an allocation and a JS round per read (docs/benchmarks.md). Here the
 * socket is opened with Node's `onread` buffer: the status line and headers
 * land in a small per-connection buffer, and every read of the body lands in
 * the chunk buffer at the offset it belongs to, as large as the kernel has
 * bytes queued. Nothing is allocated per read.
 *
 * The reader speaks only what the peer protocol needs: GET with Range over
 * keep-alive HTTP/1.1, answered by 206 with an exact Content-Range and a
 * Content-Length body (the peer server never chunks a range). Everything else
 * is refused as the peer's error. A read never goes past the bytes still
 * expected, so a body longer than promised never touches the buffer.
 */
import net from 'node:net';
import tls from 'node:tls';
import { ShoalError } from '../errors.js';
import { copyInto } from '../store/buffer-pool.js';

/** Status line and headers of one response; the peer server's are about 250 bytes. */
export const HEAD_MAX = 16 * 1024;
/** At most this many connections to one peer at once (the swarm asks for far fewer). */
const MAX_PER_ORIGIN = 16;
const CRLF2 = Buffer.from('\r\n\r\n', 'latin1');
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export interface RangeGet {
  /** http://host:port of the peer. */
  url: string;
  path: string;
  headers: Record<string, string>;
  /** Inclusive byte offsets; `into` holds exactly end - start + 1 bytes. */
  start: number;
  end: number;
  into: Buffer;
  signal: AbortSignal;
  /** Bytes [0, got) of `into` are filled. */
  onProgress(got: number): void;
}

/** The peer closed a kept-alive connection before it answered: ask again on a new one. */
class StaleConnection extends Error {}

interface Job {
  get: RangeGet;
  want: number;
  got: number;
  resolve(): void;
  reject(e: Error): void;
}

interface Head {
  status: number;
  headers: Map<string, string>;
}

/** Parses a status line and header lines (latin1), or throws a peer-protocol naming what is wrong. */
export function parseHead(text: string, where: string): Head {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/.exec(lines[0]!);
  if (!m) throw new ShoalError('peer-protocol', `${where}: not an HTTP/1.1 status line`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).toLowerCase() : '';
    if (!TOKEN.test(name)) throw new ShoalError('peer-protocol', `${where}: malformed header line`);
    const value = line.slice(colon + 1).trim();
    const prev = headers.get(name);
    // A repeated Content-Length or Content-Range that disagrees is how responses get smuggled.
    if (prev !== undefined && prev !== value && (name === 'content-length' || name === 'content-range')) {
      throw new ShoalError('peer-protocol', `${where}: conflicting ${name} headers`);
    }
    headers.set(name, prev === undefined || prev === value ? value : `${prev}, ${value}`);
  }
  return { status: Number(m[1]), headers };
}

class Conn {
  readonly socket: net.Socket;
  private head = Buffer.allocUnsafe(HEAD_MAX);
  private headLen = 0;
  private phase: 'idle' | 'head' | 'body' = 'idle';
  private job: Job | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private headTimer: NodeJS.Timeout | undefined;
  /** Served a response already: a failure before the next answer's first byte may just be its idle close. */
  reused = false;
  keepAlive = true;
  /** How long the peer lets a connection idle (its Keep-Alive hint), less a margin. */
  idleMs: number;
  idleTimer: NodeJS.Timeout | undefined;

  constructor(readonly key: string, host: string, port: number, localAddress: string | undefined, connectTimeoutMs: number, idleMs: number, private onClose: (c: Conn) => void, tlsOpts?: tls.ConnectionOptions) {
    this.idleMs = idleMs;
    const onread = { buffer: () => this.nextBuffer(), callback: (n: number) => { this.onBytes(n); return true; } };
    // Over TLS too: the plaintext of each record is written where it belongs (measured: a quarter
    // less CPU than 'data' events, which allocate a Buffer per 16 KiB record).
    this.socket = tlsOpts
      ? tls.connect({ ...tlsOpts, host, port, ...(localAddress ? { localAddress } : {}), onread } as tls.ConnectionOptions).setNoDelay(true)
      : net.connect({ host, port, noDelay: true, ...(localAddress ? { localAddress } : {}), onread });
    this.connectTimer = setTimeout(() => this.socket.destroy(new Error(`connect to ${key} timed out`)), connectTimeoutMs);
    this.socket.once(tlsOpts ? 'secureConnect' : 'connect', () => clearTimeout(this.connectTimer));
    this.socket.on('error', (e) => this.fail(e, true));
    this.socket.on('close', () => {
      clearTimeout(this.connectTimer);
      clearTimeout(this.idleTimer);
      this.fail(new Error(`${key}: connection closed`), true);
      this.onClose(this);
    });
  }

  /** Where the kernel puts the next read: the body's next bytes, or the head buffer. */
  private nextBuffer(): Buffer {
    const j = this.job;
    return this.phase === 'body' && j ? j.get.into.subarray(j.got) : this.head.subarray(this.headLen);
  }

  run(get: RangeGet, headersTimeoutMs: number): Promise<void> {
    const want = get.end - get.start + 1;
    return new Promise<void>((resolve, reject) => {
      this.job = { get, want, got: 0, resolve, reject };
      this.phase = 'head';
      this.headLen = 0;
      clearTimeout(this.idleTimer);
      this.socket.ref();
      let req = `GET ${get.path} HTTP/1.1\r\nhost: ${this.key}\r\nrange: bytes=${get.start}-${get.end}\r\n`;
      for (const [k, v] of Object.entries(get.headers)) req += `${k}: ${v}\r\n`;
      this.socket.write(`${req}\r\n`, 'latin1');
      this.headTimer = setTimeout(() => this.fail(new ShoalError('peer-stall', `${this.key}: no response headers within ${headersTimeoutMs} ms`)), headersTimeoutMs);
    });
  }

  private onBytes(n: number): void {
    const j = this.job;
    if (!j) {
      // Bytes nobody asked for: the last body ran past its length. The connection is unusable.
      this.socket.destroy();
      return;
    }
    if (this.phase === 'body') {
      j.got += n;
      j.get.onProgress(j.got);
      if (j.got === j.want) this.done();
      return;
    }
    const from = Math.max(0, this.headLen - 3);
    this.headLen += n;
    const at = this.head.subarray(0, this.headLen).indexOf(CRLF2, from);
    if (at < 0) {
      if (this.headLen === HEAD_MAX) this.fail(new ShoalError('peer-protocol', `${this.key}: response headers larger than ${HEAD_MAX} bytes`));
      return;
    }
    clearTimeout(this.headTimer);
    try {
      this.accept(parseHead(this.head.toString('latin1', 0, at), this.key), j);
    } catch (e) {
      return this.fail(e as Error);
    }
    let early = this.headLen - (at + 4);
    if (early > j.want) {
      // More than the body came with the head: the rest belongs to no request.
      early = j.want;
      this.keepAlive = false;
    }
    copyInto(j.get.into, this.head.subarray(at + 4, at + 4 + early), 0);
    j.got = early;
    this.phase = 'body';
    if (early) j.get.onProgress(early);
    if (j.got === j.want) this.done();
  }

  /** Throws unless the head promises exactly the range asked for. */
  private accept(h: Head, j: Job): void {
    const { start, end } = j.get;
    if (h.status === 416) throw new ShoalError('peer-lacks', `${this.key}: the peer does not hold that range (HTTP 416)`);
    if (h.status === 503) throw new ShoalError('peer-busy', `${this.key}: every upload slot of the peer is taken (HTTP 503)`);
    if (h.status !== 206) throw new ShoalError(h.status < 300 ? 'peer-protocol' : 'peer-refused', `${this.key}: HTTP ${h.status} for a range request`);
    const cr = h.headers.get('content-range') ?? '';
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(cr);
    if (!m || Number(m[1]) !== start || Number(m[2]) !== end) throw new ShoalError('peer-wrong-length', `${this.key}: Content-Range "${cr}" is not bytes ${start}-${end}`);
    if (h.headers.has('transfer-encoding')) throw new ShoalError('peer-protocol', `${this.key}: a range body must not be transfer-encoded`);
    const len = h.headers.get('content-length');
    if (len === undefined || !/^\d+$/.test(len) || Number(len) !== j.want) throw new ShoalError('peer-wrong-length', `${this.key}: Content-Length ${len ?? 'missing'}, expected ${j.want}`);
    if (/(^|,)\s*close\s*(,|$)/i.test(h.headers.get('connection') ?? '')) this.keepAlive = false;
    const t = /(?:^|,)\s*timeout=(\d+)/i.exec(h.headers.get('keep-alive') ?? '');
    if (t) this.idleMs = Math.min(this.idleMs, Math.max(0, Number(t[1]) * 1000 - 1000));
  }

  private done(): void {
    const j = this.job!;
    this.job = undefined;
    this.phase = 'idle';
    this.headLen = 0;
    this.reused = true;
    j.resolve();
  }

  /**
   * Ends the request in flight, if any, and the connection with it: its buffer may be reused
   * at once. `broke`: the connection failed under it (rather than the caller or a check ending it).
   */
  fail(e: Error, broke = false): void {
    const j = this.job;
    clearTimeout(this.headTimer);
    if (!j) return;
    this.job = undefined;
    const phase = this.phase;
    const headLen = this.headLen;
    this.phase = 'idle';
    this.headLen = 0;
    this.socket.destroy();
    if (broke && phase === 'body') {
      // The headers promised the range and the body broke off: a crashed or lying peer.
      e = new ShoalError('peer-wrong-length', `${this.key}: body cut short after ${j.got} of ${j.want} bytes`, { cause: e });
    } else if (broke && phase === 'head' && headLen === 0 && this.reused) {
      e = new StaleConnection(e.message, { cause: e });
    }
    j.reject(e);
  }
}

export class RangeReader {
  private idle = new Map<string, Conn[]>();
  private waiters = new Map<string, Array<() => void>>();
  private all = new Set<Conn>();

  constructor(private opts: { connectTimeoutMs: number; headersTimeoutMs: number; idleMs: number; localAddress?: (dest: string) => string | undefined; tls?: tls.ConnectionOptions }) {}

  /** Fills `get.into` with the range, or rejects: peer-protocol (a lying peer), timeout, aborted, or a connection error. */
  async read(get: RangeGet): Promise<void> {
    const u = new URL(get.url);
    if (u.protocol !== (this.opts.tls ? 'https:' : 'http:')) throw new ShoalError('peer-protocol', `${get.url}: peers of this site speak ${this.opts.tls ? 'TLS' : 'plain HTTP'}`);
    for (const [k, v] of Object.entries(get.headers)) {
      if (!TOKEN.test(k) || /[\r\n]/.test(v)) throw new Error(`header ${JSON.stringify(k)} cannot be sent`);
    }
    for (let attempt = 0; ; attempt++) {
      get.signal.throwIfAborted();
      const conn = await this.checkout(u, get.signal);
      const onAbort = () => conn.fail(get.signal.reason instanceof Error ? get.signal.reason : new ShoalError('aborted', 'range request aborted'));
      get.signal.addEventListener('abort', onAbort, { once: true });
      try {
        await conn.run(get, this.opts.headersTimeoutMs);
      } catch (e) {
        if (e instanceof StaleConnection && attempt === 0) continue;
        throw e;
      } finally {
        get.signal.removeEventListener('abort', onAbort);
      }
      this.checkin(conn);
      return;
    }
  }

  private async checkout(u: URL, signal: AbortSignal): Promise<Conn> {
    const key = u.host;
    for (;;) {
      const list = this.idle.get(key);
      while (list?.length) {
        const c = list.pop()!;
        if (!c.socket.destroyed) return c;
      }
      let open = 0;
      for (const c of this.all) if (c.key === key) open++;
      if (open < MAX_PER_ORIGIN) {
        const host = u.hostname.replace(/^\[|\]$/g, '');
        const c = new Conn(key, host, Number(u.port || 80), this.opts.localAddress?.(host), this.opts.connectTimeoutMs, this.opts.idleMs, (gone) => this.forget(gone), this.opts.tls);
        this.all.add(c);
        return c;
      }
      await new Promise<void>((resolve, reject) => {
        const q = this.waiters.get(key) ?? [];
        const wake = () => { signal.removeEventListener('abort', onAbort); resolve(); };
        // An aborted waiter leaves the queue, so that a wake-up is never spent on it.
        const onAbort = () => { q.splice(q.indexOf(wake), 1); reject(signal.reason); };
        q.push(wake);
        this.waiters.set(key, q);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  private checkin(c: Conn): void {
    if (!c.keepAlive || c.socket.destroyed || c.idleMs <= 0) { c.socket.destroy(); return; }
    c.socket.unref();
    c.idleTimer = setTimeout(() => c.socket.destroy(), c.idleMs);
    const list = this.idle.get(c.key) ?? [];
    list.push(c);
    this.idle.set(c.key, list);
    this.wakeOne(c.key);
  }

  private forget(c: Conn): void {
    if (!this.all.delete(c)) return;
    const list = this.idle.get(c.key);
    const i = list?.indexOf(c) ?? -1;
    if (i >= 0) list!.splice(i, 1);
    this.wakeOne(c.key);
  }

  private wakeOne(key: string): void {
    this.waiters.get(key)?.shift()?.();
  }

  close(): void {
    for (const c of [...this.all]) {
      c.fail(new ShoalError('aborted', 'peer client closed'));
      c.socket.destroy(); // an idle one has no request to fail
    }
  }
}
