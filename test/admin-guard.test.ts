/** The admin API against a browser page: DNS rebinding and cross-origin state changes are refused; local tools and the socket work. */
import test from 'ava';
import http from 'node:http';
import path from 'node:path';
import { tmpDir } from './helpers/fixtures.js';
import { originWithRelease } from './helpers/release.js';
import { peerAddresses, startShoald } from './helpers/site.js';

const MiB = 1 << 20;

/** A raw request, so Host and Origin are exactly what a browser would send. */
function request(port: number, method: string, p: string, headers: Record<string, string>, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: { ...headers, ...(body ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('foreign Host names and cross-origin state changes get 403 forbidden; the CLI\'s own requests pass', async (t) => {
  const dir = await tmpDir(t);
  const { rel } = await originWithRelease(t, dir, { size: 2 * MiB });
  const [addr] = await peerAddresses(1);
  const d = await startShoald({ name: 'd', dir: path.join(dir, 'd'), peer: addr!, staticPeers: [], trustedKeys: rel.trusted });
  t.teardown(() => d.kill('SIGKILL'));
  const here = `127.0.0.1:${d.adminPort}`;
  const fetchBody = JSON.stringify({ manifestUrl: rel.manifestUrl });
  // DNS rebinding: a page on attacker.example resolving to 127.0.0.1 reads and writes as same-origin.
  const rebound = await request(d.adminPort, 'GET', '/api/v1/status', { host: `attacker.example:${d.adminPort}` });
  t.is(rebound.status, 403);
  t.regex(rebound.text, /"code":"forbidden"/);
  t.is((await request(d.adminPort, 'POST', '/api/v1/fetches', { host: `attacker.example:${d.adminPort}`, 'content-type': 'application/json' }, fetchBody)).status, 403);
  // A page elsewhere posting to us: a form (text/plain), a fetch with its Origin, a fetch marked cross-site.
  t.is((await request(d.adminPort, 'POST', '/api/v1/fetches', { host: here, 'content-type': 'text/plain' }, fetchBody)).status, 403);
  t.is((await request(d.adminPort, 'POST', '/api/v1/artifacts/app/1.0.0/unpin', { host: here, origin: 'http://attacker.example' })).status, 403);
  t.is((await request(d.adminPort, 'DELETE', '/api/v1/artifacts/app/1.0.0', { host: here, 'sec-fetch-site': 'cross-site' })).status, 403);
  // Our own names and tools still work: reads with any local Host, JSON posts without an Origin.
  t.is((await request(d.adminPort, 'GET', '/api/v1/status', { host: `localhost:${d.adminPort}` })).status, 200);
  t.is((await request(d.adminPort, 'POST', '/api/v1/fetches', { host: here, 'content-type': 'application/json', origin: `http://${here}` }, fetchBody)).status, 202, 'the dashboard\'s own origin');
  const job = await d.client.createFetch({ manifestUrl: rel.manifestUrl });
  t.is((await d.client.waitFetch(job.id)).state, 'done');
});
