/** The peer range reader against a raw TCP server that answers exactly as each test scripts it. */
import test from 'ava';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { HEAD_MAX, parseHead, RangeReader, type RangeGet } from '../daemon/peers/range-reader.js';
import { isShoalError, peerVerdict, type ErrorCode } from '../daemon/errors.js';

const DATA = randomBytes(1 << 20);

interface Req { text: string; range: [number, number]; conn: number; headers: Record<string, string> }
type Answer = (s: net.Socket, r: Req) => unknown;

/** A server that reads each request head and lets `answer` write whatever it likes. */
async function scripted(t: { teardown(f: () => unknown): void }, answer: Answer) {
  const sockets = new Set<net.Socket>();
  const st = { conns: 0, requests: [] as Req[], open: 0, maxOpen: 0 };
  const server = net.createServer((s) => {
    const conn = ++st.conns;
    sockets.add(s);
    st.maxOpen = Math.max(st.maxOpen, ++st.open);
    s.on('close', () => { st.open--; sockets.delete(s); });
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      let at: number;
      while ((at = buf.indexOf('\r\n\r\n')) >= 0) {
        const text = buf.slice(0, at);
        buf = buf.slice(at + 4);
        const headers: Record<string, string> = {};
        for (const l of text.split('\r\n').slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
        const m = /^bytes=(\d+)-(\d+)$/.exec(headers.range ?? '')!;
        const r: Req = { text, range: [Number(m[1]), Number(m[2])], conn, headers };
        st.requests.push(r);
        void answer(s, r);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => { for (const s of sockets) s.destroy(); server.close(); });
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`, st };
}

const head206 = (r: Req, extra = '') => `HTTP/1.1 206 Partial Content\r\ncontent-range: bytes ${r.range[0]}-${r.range[1]}/${DATA.length}\r\ncontent-length: ${r.range[1] - r.range[0] + 1}\r\n${extra}\r\n`;
const body = (r: Req) => DATA.subarray(r.range[0], r.range[1] + 1);
const good: Answer = (s, r) => { s.write(head206(r)); s.write(body(r)); };

function reader(t: { teardown(f: () => unknown): void }, o: Partial<{ headersTimeoutMs: number; idleMs: number }> = {}) {
  const rr = new RangeReader({ connectTimeoutMs: 2000, headersTimeoutMs: o.headersTimeoutMs ?? 5000, idleMs: o.idleMs ?? 10_000 });
  t.teardown(() => rr.close());
  return rr;
}

/** One range into a buffer with guard bytes either side, which must never change. */
async function get(rr: RangeReader, url: string, start: number, end: number, extra: Partial<RangeGet> = {}) {
  const guard = 64;
  const whole = Buffer.alloc(end - start + 1 + 2 * guard, 0xa5);
  const into = whole.subarray(guard, guard + end - start + 1);
  const progress: number[] = [];
  const p = rr.read({ url, path: '/v1/blobs/x', headers: { 'x-test': '1' }, start, end, into, signal: AbortSignal.timeout(10_000), onProgress: (n) => progress.push(n), ...extra });
  const guardsIntact = () => whole.subarray(0, guard).every((b) => b === 0xa5) && whole.subarray(guard + into.length).every((b) => b === 0xa5);
  return { p, into, progress, guardsIntact };
}

test('ranges arrive intact over one kept-alive connection, with progress up to the last byte and the caller\'s headers sent', async (t) => {
  const { url, st } = await scripted(t, good);
  const rr = reader(t);
  for (const [a, b] of [[0, 65535], [100, 300_099], [1000, 1000], [0, DATA.length - 1]] as const) {
    const g = await get(rr, url, a, b);
    await g.p;
    t.true(g.into.equals(DATA.subarray(a, b + 1)));
    t.true(g.guardsIntact());
    t.is(g.progress.at(-1), b - a + 1);
    t.deepEqual(g.progress, [...g.progress].sort((x, y) => x - y));
  }
  t.is(st.conns, 1);
  t.is(st.requests[0]!.headers['x-test'], '1');
  t.is(st.requests[0]!.headers.host, new URL(url).host);
});

test('a response dribbled a few bytes at a time, and one whose head and body come in one write, both land exactly', async (t) => {
  const dribble: Answer = async (s, r) => {
    const all = Buffer.concat([Buffer.from(head206(r), 'latin1'), body(r)]);
    for (let i = 0; i < all.length; i += 1 + (i % 7)) { s.write(all.subarray(i, i + 1 + (i % 7))); if (i % 50 === 0) await new Promise((x) => setImmediate(x)); }
  };
  const a = await scripted(t, dribble);
  const b = await scripted(t, (s, r) => { s.write(Buffer.concat([Buffer.from(head206(r), 'latin1'), body(r)])); });
  const rr = reader(t);
  for (const url of [a.url, b.url]) {
    const g = await get(rr, url, 5, 2004);
    await g.p;
    t.true(g.into.equals(DATA.subarray(5, 2005)));
    t.true(g.guardsIntact());
  }
});

test('bytes past the promised length never reach the buffer, and the connection is not used again', async (t) => {
  const { url, st } = await scripted(t, (s, r) => { s.write(Buffer.concat([Buffer.from(head206(r), 'latin1'), body(r), randomBytes(5000)])); });
  const rr = reader(t);
  for (let i = 0; i < 2; i++) {
    const g = await get(rr, url, 0, 9999);
    await g.p;
    t.true(g.into.equals(DATA.subarray(0, 10000)));
    t.true(g.guardsIntact());
    await new Promise((r) => setTimeout(r, 50));
  }
  t.is(st.conns, 2, 'the poisoned connection was dropped');
});

const lies: Array<[string, Answer, RegExp, ErrorCode]> = [
  ['HTTP 200', (s, r) => s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${r.range[1] - r.range[0] + 1}\r\n\r\n`), /HTTP 200/, 'peer-protocol'],
  ['a wrong Content-Range', (s, r) => s.write(`HTTP/1.1 206 X\r\ncontent-range: bytes ${r.range[0] + 1}-${r.range[1] + 1}/9\r\ncontent-length: ${r.range[1] - r.range[0] + 1}\r\n\r\n`), /Content-Range/, 'peer-wrong-length'],
  ['a longer Content-Length', (s, r) => s.write(`HTTP/1.1 206 X\r\ncontent-range: bytes ${r.range[0]}-${r.range[1]}/9\r\ncontent-length: ${r.range[1] - r.range[0] + 2}\r\n\r\n`), /Content-Length/, 'peer-wrong-length'],
  ['no Content-Length', (s, r) => s.write(`HTTP/1.1 206 X\r\ncontent-range: bytes ${r.range[0]}-${r.range[1]}/9\r\n\r\n`), /Content-Length missing/, 'peer-wrong-length'],
  ['a chunked body', (s, r) => s.write(`HTTP/1.1 206 X\r\ncontent-range: bytes ${r.range[0]}-${r.range[1]}/9\r\ntransfer-encoding: chunked\r\ncontent-length: ${r.range[1] - r.range[0] + 1}\r\n\r\n`), /transfer-encoded/, 'peer-protocol'],
  ['two Content-Lengths', (s, r) => s.write(head206(r, 'content-length: 5\r\n')), /conflicting content-length/, 'peer-protocol'],
  ['a body cut short', (s, r) => { s.write(head206(r)); s.end(body(r).subarray(0, 100)); }, /cut short after 100 of/, 'peer-wrong-length'],
  ['headers without end', (s) => s.write(`HTTP/1.1 206 X\r\nx: ${'a'.repeat(HEAD_MAX)}`), /larger than 16384/, 'peer-protocol'],
  ['not HTTP at all', (s) => s.write('SSH-2.0-OpenSSH\r\n\r\n'), /status line/, 'peer-protocol'],
  ['a malformed header', (s, r) => s.write(`${head206(r).slice(0, -2)}bad header\r\n\r\n`), /malformed header/, 'peer-protocol'],
];
for (const [what, answer, msg, code] of lies) {
  test(`a peer answering with ${what} is ${code}, and the buffer's guard bytes stay untouched`, async (t) => {
    const { url } = await scripted(t, answer);
    const g = await get(reader(t), url, 10, 4009);
    const e = await t.throwsAsync(g.p);
    t.true(isShoalError(e, code), String(e));
    t.is(peerVerdict(e), 'ban');
    t.regex(e!.message, msg);
    t.true(g.guardsIntact());
  });
}

test('a kept-alive connection the peer closes as the next request goes out is replaced without failing the request', async (t) => {
  // Each connection answers once, then hangs up on the next request, as a server closing an
  // idle connection does when the request crosses its close on the wire.
  const { url, st } = await scripted(t, (s, r) => { if (st.requests.filter((q) => q.conn === r.conn).length > 1) s.destroy(); else good(s, r); });
  const rr = reader(t);
  for (let i = 0; i < 3; i++) {
    const g = await get(rr, url, i, i + 999);
    await g.p;
    t.true(g.into.equals(DATA.subarray(i, i + 1000)));
  }
  t.is(st.conns, 3);
  t.is(st.requests.length, 5, 'two requests were asked again on a new connection');
});

test('a connection the peer closed while idle is not handed out again', async (t) => {
  const { url, st } = await scripted(t, (s, r) => { good(s, r); setTimeout(() => s.end(), 20); });
  const rr = reader(t);
  for (let i = 0; i < 2; i++) {
    await (await get(rr, url, 0, 99)).p;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.is(st.conns, 2);
  t.is(st.requests.length, 2, 'no request went to the closed connection');
});

test('Connection: close and a Keep-Alive timeout of 1 s are honoured: no reuse', async (t) => {
  for (const extra of ['connection: close\r\n', 'keep-alive: timeout=1\r\n']) {
    const { url, st } = await scripted(t, (s, r) => { s.write(head206(r, extra)); s.write(body(r)); });
    const rr = reader(t);
    for (let i = 0; i < 2; i++) await (await get(rr, url, 0, 99)).p;
    t.is(st.conns, 2, extra);
  }
});

test('aborting mid-body rejects at once, and bytes the peer sends afterwards never reach the buffer', async (t) => {
  let later: (() => void) | undefined;
  const { url } = await scripted(t, (s, r) => { s.write(head206(r)); s.write(body(r).subarray(0, 1000)); later = () => s.write(body(r).subarray(1000)); });
  const ac = new AbortController();
  const g = await get(reader(t), url, 0, 99_999, { signal: ac.signal, onProgress: (n) => { if (n >= 1000) ac.abort(new Error('enough')); } });
  await t.throwsAsync(g.p, { message: 'enough' });
  const snapshot = Buffer.from(g.into);
  later?.();
  await new Promise((r) => setTimeout(r, 200));
  t.true(g.into.equals(snapshot), 'nothing written after the abort');
  t.true(g.guardsIntact());
});

test('no answer within the headers timeout is a stall; a refused connection is a plain error, not the peer\'s lie', async (t) => {
  const { url } = await scripted(t, () => {});
  const g = await get(reader(t, { headersTimeoutMs: 300 }), url, 0, 9);
  const e = await t.throwsAsync(g.p);
  t.true(isShoalError(e, 'peer-stall'), String(e));
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const g2 = await get(reader(t), `http://127.0.0.1:${port}`, 0, 9);
  const e2 = await t.throwsAsync(g2.p);
  t.false(isShoalError(e2), String(e2));
  t.is(peerVerdict(e2), 'down');
  t.regex(String((e2 as Error & { code?: string }).code), /ECONNREFUSED/);
});

test('at most 16 connections to one peer at once; the rest wait their turn and all complete', async (t) => {
  const { url, st } = await scripted(t, (s, r) => { setTimeout(() => good(s, r), 30); });
  const rr = reader(t);
  const gets = await Promise.all(Array.from({ length: 24 }, (_, i) => get(rr, url, i * 1000, i * 1000 + 999)));
  await Promise.all(gets.map((g) => g.p));
  gets.forEach((g, i) => t.true(g.into.equals(DATA.subarray(i * 1000, i * 1000 + 1000))));
  t.true(st.maxOpen <= 16, `max open ${st.maxOpen}`);
  t.is(st.requests.length, 24);
});

test('parseHead: folds repeated headers, refuses obs-fold and conflicting lengths', (t) => {
  const h = parseHead('HTTP/1.1 206 Partial Content\r\nA: 1\r\na: 2\r\nContent-Length: 5\r\ncontent-length: 5', 'p');
  t.is(h.status, 206);
  t.is(h.headers.get('a'), '1, 2');
  t.is(h.headers.get('content-length'), '5');
  t.throws(() => parseHead('HTTP/1.1 206 X\r\nA: 1\r\n folded', 'p'), { message: /malformed header/ });
  t.throws(() => parseHead('HTTP/2 206 X', 'p'), { message: /status line/ });
  t.throws(() => parseHead('HTTP/1.1 206 X\r\nContent-Range: bytes 0-1/2\r\ncontent-range: bytes 0-2/3', 'p'), { message: /conflicting/ });
});

test('a header that would split the request is refused before anything is sent', async (t) => {
  const { url, st } = await scripted(t, good);
  const g = await get(reader(t), url, 0, 9, { headers: { 'x-a': 'b\r\nrange: bytes=0-1' } });
  await t.throwsAsync(g.p, { message: /cannot be sent/ });
  t.is(st.conns, 0);
});

test('a request that gives up waiting for a connection does not take the next free one from a request still waiting', async (t) => {
  // 16 requests hold every connection; only the first answers soon. A waits and is aborted, B waits on.
  const { url } = await scripted(t, (s, r) => { setTimeout(() => good(s, r), r.range[0] === 0 || r.range[0] === 99 ? 100 : 1500); });
  const rr = reader(t);
  const holders = await Promise.all(Array.from({ length: 16 }, (_, i) => get(rr, url, i * 10, i * 10 + 9)));
  const ac = new AbortController();
  const a = await get(rr, url, 50_000, 50_009, { signal: ac.signal });
  const b = await get(rr, url, 99, 108);
  const order: string[] = [];
  void b.p.then(() => order.push('B'));
  holders.forEach((h, i) => void h.p.then(() => order.push(`h${i}`)));
  ac.abort(new Error('gave up'));
  await t.throwsAsync(a.p, { message: 'gave up' });
  await b.p;
  await Promise.all(holders.map((h) => h.p));
  // Only h0's answer comes soon: B can finish before the slow holders only on the connection h0 freed.
  t.true(order.indexOf('B') < order.indexOf('h1'), `B got the connection the first holder freed (order: ${order.join(' ')})`);
  t.true(b.into.equals(DATA.subarray(99, 109)));
});
