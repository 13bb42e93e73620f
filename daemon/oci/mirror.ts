/**
 * The OCI distribution pull mirror (`ociListen`, 127.0.0.1:7402 by default):
 * containerd's hosts.toml mirrors, Docker's `registry-mirrors` and
 * registries.conf mirrors point here.
 *
 * - Manifests and blobs by sha256 digest: content-addressed blobs, fetched
 *   once per site through the swarm and answered only once the whole blob
 *   matched its digest (the digest is the trust chain: no key needed).
 * - Manifests by tag: mutable, so resolved against the upstream registry on
 *   every request and never from a peer; only with `ociResolve` on.
 * - Anything this daemon cannot fetch is a quick 404, and the client goes to
 *   the registry itself (with its own credentials where it has any).
 * Pull only: every other method and endpoint is refused.
 */
import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { ShoalError } from '../errors.js';
import type { Logger } from '../common/log.js';
import type { Content } from '../frontends/content.js';
import { serveBlob } from '../frontends/serve.js';
import type { OriginClient } from '../origin/origin-client.js';
import type { Blob } from '../store/blob.js';
import { setNewest } from '../common/limits.js';
import { MEDIA_TYPE_RE, manifestMediaType, OciRequestError, parsePullPath, SHA256_DIGEST_RE, upstreamUrl, type PullTarget, type Registry } from './reference.js';

/** The distribution spec's bound a registry may hold a client to; larger "manifests" are not taken. */
export const MAX_MANIFEST_BYTES = 4 << 20;
const MAX_TYPES = 4096;
const TAG_TIMEOUT_MS = 30_000;

export interface OciMirrorDeps {
  content: Content;
  origin: Pick<OriginClient, 'fetchWith' | 'probeSize'>;
  registries(): readonly Registry[];
  /** Whether tags are resolved (against the upstream, never a peer). */
  resolveTags(): boolean;
  log: Logger;
  /** Bytes handed out from a blob already complete here, or a tag's manifest passed through. */
  counted(how: 'local' | 'unshared', bytes: number): void;
}

export function createOciMirror(d: OciMirrorDeps): http.Server {
  /** Media types of manifests served, by digest (a manifest fetched by digest carries no Content-Type). */
  const types = new Map<string, string>();
  /**
   * Sizes of the blobs and child manifests the manifests served here name (from bytes that
   * matched their digest): a blob asked for next needs no HEAD to the registry first.
   */
  const sizes = new Map<string, number>();
  const server = http.createServer({ maxHeaderSize: 16 * 1024, requestTimeout: 0, headersTimeout: 15_000, keepAliveTimeout: 30_000 }, (req, res) => {
    res.setHeader('docker-distribution-api-version', 'registry/2.0');
    handle(req, res).catch((e) => {
      if (res.headersSent) return void res.destroy();
      const err = asOciError(e);
      if (err.status !== 404 || !(e instanceof OciRequestError || (e as ShoalError).code === 'not-found')) {
        d.log('warn', 'oci: request not served; the client falls back to the registry', { url: req.url?.slice(0, 300), code: (e as ShoalError).code, error: (e as Error).message });
      }
      sendOciError(req, res, err);
    });
  });
  server.on('clientError', (_e, socket) => socket.destroy());

  async function handle(req: IncomingMessage, res: ServerResponse) {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new OciRequestError(405, 'UNSUPPORTED', 'this mirror is pull-only: GET and HEAD');
    const t = parsePullPath(req.url ?? '/', d.registries());
    if (t.kind === 'base') return void res.writeHead(200, { 'content-type': 'application/json', 'content-length': 2 }).end(req.method === 'HEAD' ? undefined : '{}');
    const ctl = new AbortController();
    res.once('close', () => ctl.abort(new ShoalError('aborted', 'the client went away')));
    if (t.tag) return tag(t, req, res, ctl.signal);
    const sha256 = t.sha256!;
    const url = upstreamUrl(t, t.kind);
    const cached = d.content.cached(sha256);
    const known = sizes.get(sha256);
    if (t.kind === 'blob' && req.method === 'HEAD' && !cached) {
      // A client checking that a blob exists: its size from a manifest served here, else the
      // registry's answer, without fetching the blob.
      const size = known ?? (await d.origin.probeSize(url, ctl.signal));
      return void res.writeHead(200, blobHeaders(t.reference, 'application/octet-stream', size)).end();
    }
    let blob: Blob;
    let local = !!cached;
    if (cached) blob = cached;
    else {
      let size = known;
      if (t.kind === 'manifest' && size === undefined) {
        size = await d.origin.probeSize(url, ctl.signal);
        if (size > MAX_MANIFEST_BYTES) throw new OciRequestError(404, 'MANIFEST_UNKNOWN', `manifest larger than ${MAX_MANIFEST_BYTES} bytes`);
      }
      ({ blob, local } = await d.content.complete({ sha256, ...(size !== undefined ? { size } : {}), urls: [url], kind: 'oci' }, { signal: ctl.signal }));
    }
    let type = 'application/octet-stream';
    if (t.kind === 'manifest') {
      if (blob.size > MAX_MANIFEST_BYTES) throw new OciRequestError(404, 'MANIFEST_UNKNOWN', `manifest larger than ${MAX_MANIFEST_BYTES} bytes`);
      if (!types.has(sha256)) {
        const body = await readAll(blob);
        noteSizes(sizes, body);
        setNewest(types, sha256, manifestMediaType(body), MAX_TYPES);
      }
      type = types.get(sha256)!;
    }
    const sent = await serveBlob(blob, req, res, { 'content-type': type, 'docker-content-digest': t.reference });
    if (local) d.counted('local', sent);
  }

  /** A tag: asked of the upstream every time; its digest is the SHA-256 of the bytes it sent. */
  async function tag(t: Exclude<PullTarget, { kind: 'base' }>, req: IncomingMessage, res: ServerResponse, signal: AbortSignal) {
    if (!d.resolveTags()) throw new OciRequestError(404, 'MANIFEST_UNKNOWN', 'tags are not resolved by this mirror (ociResolve is off): ask the registry');
    const got = await d.origin.fetchWith(upstreamUrl(t, 'manifest'), MAX_MANIFEST_BYTES, {}, AbortSignal.any([signal, AbortSignal.timeout(TAG_TIMEOUT_MS)]));
    const digest = `sha256:${createHash('sha256').update(got.body).digest('hex')}`;
    const said = got.headers['docker-content-digest'];
    if (typeof said === 'string' && said.startsWith('sha256:') && said !== digest) {
      throw new OciRequestError(404, 'MANIFEST_UNKNOWN', `the registry said ${said.slice(0, 20)}… for bytes whose digest is ${digest.slice(0, 20)}…`);
    }
    const ct = got.headers['content-type'];
    const type = typeof ct === 'string' && MEDIA_TYPE_RE.test(ct.split(';')[0]!.trim()) ? ct.split(';')[0]!.trim() : manifestMediaType(got.body);
    setNewest(types, digest.slice(7), type, MAX_TYPES);
    noteSizes(sizes, got.body);
    res.writeHead(200, blobHeaders(digest, type, got.body.length));
    if (req.method === 'HEAD') return void res.end();
    res.end(got.body);
    d.counted('unshared', got.body.length);
  }

  return server;
}

function blobHeaders(digest: string, type: string, size: number): http.OutgoingHttpHeaders {
  return { 'content-type': type, 'content-length': size, 'docker-content-digest': digest, 'accept-ranges': 'bytes', etag: `"${digest}"` };
}

/** The descriptors a manifest (or index) lists: digest → size. */
function noteSizes(sizes: Map<string, number>, body: Buffer) {
  let j: { config?: unknown; layers?: unknown; manifests?: unknown };
  try {
    j = JSON.parse(body.toString('utf8')) as typeof j;
  } catch {
    return;
  }
  const list = [j.config, ...(Array.isArray(j.layers) ? j.layers : []), ...(Array.isArray(j.manifests) ? j.manifests : [])];
  for (const x of list.slice(0, 1024)) {
    const o = x as { digest?: unknown; size?: unknown } | null;
    const m = typeof o?.digest === 'string' ? SHA256_DIGEST_RE.exec(o.digest) : null;
    if (m && Number.isSafeInteger(o!.size) && (o!.size as number) >= 0) setNewest(sizes, m[1]!, o!.size as number, MAX_TYPES);
  }
}

async function readAll(blob: Blob): Promise<Buffer> {
  if (blob.size === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  for await (const b of blob.openRead(0, blob.size - 1) as AsyncIterable<Buffer>) parts.push(b);
  return Buffer.concat(parts);
}

function asOciError(e: unknown): OciRequestError {
  if (e instanceof OciRequestError) return e;
  // Whatever this daemon cannot fetch (not there, the registry wants credentials, no source
  // answers, bytes that do not match): a 404, so the client asks the registry itself.
  return new OciRequestError(404, 'BLOB_UNKNOWN', e instanceof ShoalError ? e.message : 'internal error');
}

function sendOciError(req: IncomingMessage, res: ServerResponse, e: OciRequestError) {
  let code = e.code;
  if (code === 'BLOB_UNKNOWN' && /\/manifests\//.test(req.url ?? '')) code = 'MANIFEST_UNKNOWN';
  const body = JSON.stringify({ errors: [{ code, message: e.message.slice(0, 500), detail: null }] });
  res.writeHead(e.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(req.method === 'HEAD' ? undefined : body);
}
