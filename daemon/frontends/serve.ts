/** Serving a complete blob to a local client: one Range, 206/416, HEAD, exact lengths. */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { ShoalError } from '../errors.js';
import { parseRange } from '../common/http-util.js';
import type { Blob } from '../store/blob.js';

/** Sends [a range of] a complete blob; resolves with the body bytes sent. Only verified bytes: the blob must be complete. */
export async function serveBlob(blob: Blob, req: IncomingMessage, res: ServerResponse, extra: OutgoingHttpHeaders = {}): Promise<number> {
  if (!blob.complete) throw new ShoalError('not-found', `blob ${blob.sha256.slice(0, 12)} is not (completely) cached`);
  let start = 0;
  let end = blob.size - 1;
  const headers: OutgoingHttpHeaders = {
    'content-type': 'application/octet-stream', 'accept-ranges': 'bytes', etag: `"${blob.sha256}"`, 'x-shoal-sha256': blob.sha256, ...extra,
  };
  let status = 200;
  if (req.headers.range !== undefined && blob.size > 0) {
    const r = parseRange(req.headers.range, blob.size);
    if (r === undefined) throw new ShoalError('bad-request', 'Range must be one "bytes=a-b" range');
    if (r === 'unsatisfiable') {
      res.writeHead(416, { 'content-range': `bytes */${blob.size}` });
      res.end();
      return 0;
    }
    ({ start, end } = r);
    status = 206;
    headers['content-range'] = `bytes ${start}-${end}/${blob.size}`;
  }
  const length = blob.size === 0 ? 0 : end - start + 1;
  headers['content-length'] = length;
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || length === 0) {
    res.end();
    return 0;
  }
  await pipeline(blob.openRead(start, end), res).catch(() => res.destroy());
  return length;
}
