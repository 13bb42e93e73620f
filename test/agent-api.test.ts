/** The daemon through its front doors: `shoal daemon`, the agent socket, JSON errors, clean SIGTERM. */
import test from 'ava';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { AgentClient } from '../agent-api/client.js';
import { ShoalError } from '../daemon/errors.js';
import { CLI, keys, runShoal, tmpDir } from './helpers/fixtures.js';

test('`shoal daemon` serves the agent API on loopback and a unix socket, answers errors as JSON codes, and exits 0 on SIGTERM', async (t) => {
  const dir = await tmpDir(t);
  const sock = path.join(dir, 'run/agent.sock');
  const [k] = keys(1);
  const proc = spawn(process.execPath, [CLI, 'daemon', '--cache-dir', path.join(dir, 'cache'), '--peer-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--apt-listen', '127.0.0.1:0', '--oci-listen', '127.0.0.1:0',
    '--agent-socket', sock, '--trusted-keys', k!.publicKey.text, '--site-id', 'lab'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => proc.kill('SIGKILL'));
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  const ready = await new Promise<{ adminPort: number; peerId: string }>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n')) { try { const j = JSON.parse(line); if (j.msg === 'shoald ready') resolve(j); } catch { /* partial */ } }
    });
    setTimeout(() => reject(new Error(`no ready line: ${buf}`)), 10_000);
  });
  const api = `http://127.0.0.1:${ready.adminPort}`;
  const viaSocket = new AgentClient({ socket: sock });
  const viaTcp = new AgentClient({ api });
  t.teardown(async () => { await viaSocket.close(); await viaTcp.close(); });
  t.deepEqual(await viaSocket.peers(), []);
  const st = await viaSocket.status() as { peerId: string; site: string };
  t.is(st.peerId, ready.peerId);
  t.is(st.site, 'lab');
  t.is(((await fs.stat(sock)).mode & 0o777), 0o660);

  // Errors carry stable codes.
  const notFound = await t.throwsAsync(viaTcp.getFetch('nope'), { instanceOf: ShoalError });
  t.is(notFound?.code, 'not-found');
  const res = await fetch(`${api}/api/v1/fetches`, { method: 'POST', body: '{"x":', headers: { 'content-type': 'application/json' } });
  t.is(res.status, 400);
  t.is(((await res.json()) as { error: { code: string } }).error.code, 'bad-request');
  t.is((await fetch(`${api}/healthz`)).status, 200);
  t.is((await fetch(`${api}/readyz`)).status, 200);

  // A fetch of a manifest that does not exist fails with a code, and the CLI says so with exit 11.
  const job = await viaTcp.createFetch({ manifestUrl: 'http://127.0.0.1:9/none.json' });
  const failed = await t.throwsAsync(viaTcp.waitFetch(job.id), { instanceOf: ShoalError });
  t.is(failed?.code, 'origin-error');
  const cli = await runShoal(['fetch', 'http://127.0.0.1:9/none.json', '--socket', sock, '-o', path.join(dir, 'x'), '--json']);
  t.is(cli.code, 11);
  t.is(JSON.parse(cli.stdout).error.code, 'origin-error');
  t.regex(cli.stderr, /^shoal: error \[origin-error\]/m);
  const peers = await runShoal(['peers', '--api', api, '--json']);
  t.is(peers.code, 0);
  t.deepEqual(JSON.parse(peers.stdout), { peers: [] });
  t.is((await runShoal(['peers', '--api', 'http://127.0.0.1:1'])).code, 10, 'daemon unreachable');

  proc.kill('SIGTERM');
  t.is(await exited, 0);
  await t.throwsAsync(fs.stat(sock), undefined, 'socket removed on stop');
});

test('shoald refuses a bad config with the key named, and exits non-zero', async (t) => {
  const dir = await tmpDir(t);
  await fs.writeFile(path.join(dir, 'c.json'), JSON.stringify({ peerListen: 'nowhere' }));
  const r = await runShoal(['daemon', '--config', path.join(dir, 'c.json')]);
  t.not(r.code, 0);
  t.regex(r.stderr, /error \[bad-config\]: .*peerListen/);
  // A port in use is one line naming the key, not a stack trace.
  const busy = net.createServer();
  await new Promise<void>((res) => busy.listen(0, '127.0.0.1', res));
  t.teardown(() => { busy.close(); });
  const port = (busy.address() as net.AddressInfo).port;
  const r2 = await runShoal(['daemon', '--cache-dir', path.join(dir, 'cache'), '--peer-listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0', '--apt-listen', '127.0.0.1:0', '--oci-listen', '127.0.0.1:0']);
  t.is(r2.code, 1);
  t.is(r2.stderr.trim(), `shoal: error [bad-config]: peerListen 127.0.0.1:${port}: cannot listen: address already in use`);
});
