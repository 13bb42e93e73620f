/** Small helpers shared by the daemon's HTTP listeners. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ShoalError } from '../errors.js';
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../manifests/canonical.js';

export function sendJson(res: ServerResponse, status: number, body: unknown) {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), 'cache-control': 'no-store' });
  res.end(data);
}

/** `{error: {code, message}}` with the status that fits the code. */
export function sendError(res: ServerResponse, e: unknown) {
  const err = e instanceof ShoalError ? e : new ShoalError('internal', 'internal error');
  if (res.headersSent) { res.destroy(); return; }
  sendJson(res, err.http, { error: { code: err.code, message: err.message } });
}

/** Reads a request body of at most maxBytes. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) throw new ShoalError('too-large', `request body larger than ${maxBytes} bytes`);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const b of req as AsyncIterable<Buffer>) {
    n += b.length;
    if (n > maxBytes) throw new ShoalError('too-large', `request body larger than ${maxBytes} bytes`);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

export function parseJsonBody(body: Buffer): unknown {
  const text = body.toString('utf8');
  if (nestsDeeperThan(text, MAX_JSON_DEPTH)) throw new ShoalError('malformed', `request body nested deeper than ${MAX_JSON_DEPTH} levels`);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ShoalError('bad-request', 'request body is not JSON');
  }
}

/** Reads a JSON request body of at most maxBytes. */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  return parseJsonBody(await readBody(req, maxBytes));
}

/** Parses a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range against a size; undefined = malformed. */
export function parseRange(header: string, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return undefined;
  }
  if (start >= size || size === 0) return 'unsatisfiable';
  return { start, end };
}

/** Throws away a response body we will not read; destroying without a listener would crash on its 'error'. */
export function discard(body: { on(ev: 'error', fn: () => void): unknown; destroy(): unknown }) {
  body.on('error', () => {});
  body.destroy();
}
