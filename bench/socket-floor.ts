/**
 * What Node's sockets cost by themselves: one process writes SIZE bytes from memory in
 * 1 MiB writes, another reads them with `onread` into one 1 MiB buffer (as the range
 * reader does into chunk buffers) — plain TCP, then TLS 1.3 with the site's PSK settings
 * (`siteLink`). No disk, no hashing, no HTTP: the floor under shoald's own figures, so the
 * throughput benchmark can say how much of a private link's cost is TLS itself.
 *   node dist/bench/socket-floor.js serve plain|tls SIZE   (the serving child; prints its port, then its CPU seconds)
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { siteLink } from '../daemon/peers/site-auth.js';

const SECRET = 'socket-floor-bench-secret-0001';
const WRITE = 1 << 20;
const cpuNow = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

function serve(mode: string, size: number) {
  const buf = randomBytes(WRITE);
  const onSocket = (sock: net.Socket) => {
    const c0 = cpuNow();
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        const n = Math.min(WRITE, size - sent);
        sent += n;
        if (!sock.write(n === WRITE ? buf : buf.subarray(0, n))) return void sock.once('drain', pump);
      }
      sock.end(() => process.send!({ cpu: cpuNow() - c0 }));
    };
    pump();
  };
  const server = mode === 'tls' ? tls.createServer(siteLink([SECRET]).server, onSocket) : net.createServer(onSocket);
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as net.AddressInfo).port }));
}

/** One transfer of `size` bytes: wall ms and CPU seconds of the receiving and the serving process. */
export async function socketTransfer(mode: 'plain' | 'tls', size: number): Promise<{ ms: number; cpu: { receiver: number; server: number } }> {
  const child = fork(fileURLToPath(import.meta.url), ['serve', mode, String(size)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const messages: Array<{ port?: number; cpu?: number }> = [];
    let wake = () => {};
    child.on('message', (m) => { messages.push(m as { port?: number; cpu?: number }); wake(); });
    const next = async <K extends 'port' | 'cpu'>(k: K): Promise<number> => {
      for (;;) {
        const m = messages.find((x) => x[k] !== undefined);
        if (m) return m[k]!;
        if (child.exitCode !== null) throw new Error('socket-floor server exited');
        await new Promise<void>((r) => { wake = r; });
      }
    };
    const port = await next('port');
    const into = Buffer.alloc(WRITE);
    let got = 0;
    const c0 = cpuNow();
    const t0 = performance.now();
    const onread = { buffer: into, callback: (n: number) => { got += n; return true; } };
    const sock = mode === 'tls'
      ? tls.connect({ ...siteLink([SECRET]).client, host: '127.0.0.1', port, onread } as tls.ConnectionOptions)
      : net.connect({ host: '127.0.0.1', port, onread });
    await new Promise<void>((resolve, reject) => { sock.once('end', resolve); sock.once('error', reject); });
    const ms = performance.now() - t0;
    const receiver = cpuNow() - c0;
    sock.destroy();
    if (got !== size) throw new Error(`socket-floor: got ${got} of ${size} bytes`);
    return { ms, cpu: { receiver, server: await next('cpu') } };
  } finally {
    child.kill();
  }
}

if (process.argv[2] === 'serve') serve(process.argv[3]!, Number(process.argv[4]));
