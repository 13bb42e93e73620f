/**
 * Bounds what one remote address can hold of a server: sockets, and counted
 * slots (send buffers, long-poll waiters). Peers are told apart by address:
 * a request cannot prove who sends it before it has been read, and an
 * attacker's sockets all come from where it is.
 */
import type net from 'node:net';
import type http from 'node:http';

export interface ConnectionLimits {
  /** Sockets one remote address may hold open. */
  perAddress: number;
  /** Sockets in all: past this, the oldest socket that is not in a request makes room. */
  total: number;
}

/**
 * Counts sockets per address and refuses past the limits. A socket that is
 * between requests (never sent one, or idle after one) is the first to go
 * when the total is reached: a slowloris cannot hold the descriptors that a
 * fresh peer needs.
 */
export function guardConnections(server: http.Server, limits: ConnectionLimits, onRefuse?: (why: 'per-address' | 'total', addr: string) => void) {
  const byAddress = new Map<string, number>();
  const idle = new Set<net.Socket>(); // insertion order: oldest first
  let open = 0;
  server.on('connection', (socket: net.Socket) => {
    const addr = socket.remoteAddress ?? '?';
    const n = byAddress.get(addr) ?? 0;
    if (n >= limits.perAddress) {
      onRefuse?.('per-address', addr);
      return void socket.destroy();
    }
    if (open >= limits.total) {
      const oldest = idle.values().next().value as net.Socket | undefined;
      if (!oldest) {
        onRefuse?.('total', addr);
        return void socket.destroy();
      }
      idle.delete(oldest);
      oldest.destroy();
    }
    open++;
    byAddress.set(addr, n + 1);
    idle.add(socket);
    socket.once('close', () => {
      open--;
      idle.delete(socket);
      const left = (byAddress.get(addr) ?? 1) - 1;
      if (left > 0) byAddress.set(addr, left);
      else byAddress.delete(addr);
    });
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    idle.delete(socket);
    res.once('finish', () => { if (!socket.destroyed) idle.add(socket); });
  });
}

/** At most `per` slots per key: one address cannot take every send buffer or waiter. */
export class PerKeyLimit {
  private used = new Map<string, number>();
  constructor(private per: number) {}

  /** A release function, or undefined when this key holds its share already. */
  take(key: string): (() => void) | undefined {
    const n = this.used.get(key) ?? 0;
    if (n >= this.per) return undefined;
    this.used.set(key, n + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.used.get(key) ?? 1) - 1;
      if (left > 0) this.used.set(key, left);
      else this.used.delete(key);
    };
  }
}
