/**
 * Zero-config discovery on the LAN. We advertise `_shoal._tcp` with
 * @homebridge/ciao (which cannot browse) and browse with multicast-dns.
 * Continuous querying backs off per RFC 6762 §5.2 (1 s, doubling, to one hour);
 * announcements and goodbyes (TTL 0) are acted on at once. A discovered peer
 * is only used after its /v1/info matches the TXT record (PeerTable probes
 * it). New entries are rate-limited and the table is capped, so a host
 * flooding fake announcements cannot grow it without bound.
 */
import ciao, { type CiaoService, type Responder } from '@homebridge/ciao';
import makeMdns from 'multicast-dns';
import os from 'node:os';
import type { Logger } from '../../common/log.js';
import { PROTOCOL_VERSION } from '../wire.js';
import type { PeerTable } from '../peer-table.js';

export const SERVICE = '_shoal._tcp.local';
const MAX_QUERY_INTERVAL_MS = 3600_000;

export interface DiscoveryOptions {
  selfId: string;
  /** Fingerprints of the site secrets held (current first), or ["open"]. Peers sharing none are ignored. */
  fingerprints: string[];
  /** How peer links are spoken: a daemon never tries one kind against the other. */
  link: 'tls-psk-v1' | 'plain';
  port: number;
  /** Interface names or IPv4 addresses; empty = all. */
  interfaces: string[];
  table: PeerTable;
  log: Logger;
  /** New peers accepted per second from mDNS (a flood beyond is dropped). */
  newPerSecond?: number;
  /** The apt proxy's port when it listens beyond loopback: advertised as `_apt_proxy._tcp`. */
  aptProxyPort?: number;
}

type MdnsInstance = ReturnType<typeof makeMdns>;
interface Answer { name: string; type: string; ttl?: number; data: unknown }

/** IPv4 addresses for the configured interfaces (names resolved through os.networkInterfaces). */
export function interfaceAddresses(interfaces: string[]): string[] {
  const nics = os.networkInterfaces();
  const out: string[] = [];
  for (const i of interfaces) {
    if (/^\d+\.\d+\.\d+\.\d+$/.test(i)) { out.push(i); continue; }
    for (const a of nics[i] ?? []) if (a.family === 'IPv4') out.push(a.address);
  }
  return out;
}

function isLoopbackOrUnspecified(ip: string) {
  return ip.startsWith('127.') || ip === '0.0.0.0' || /^2(2[4-9]|3\d)\./.test(ip);
}

export class MdnsDiscovery {
  private responder: Responder | undefined;
  private service: CiaoService | undefined;
  private aptService: CiaoService | undefined;
  private browsers: MdnsInstance[] = [];
  private queryTimer: NodeJS.Timeout | undefined;
  private interval = 1000;
  private hosts = new Map<string, { ip: string; expires: number }>();
  private budget: number;
  private lastRefill = Date.now();
  dropped = 0;

  constructor(private o: DiscoveryOptions) {
    this.budget = o.newPerSecond ?? 20;
  }

  async start(): Promise<void> {
    const ifaces = this.o.interfaces;
    this.responder = ciao.getResponder(ifaces.length ? { interface: ifaces, disableIpv6: true } : { disableIpv6: true });
    this.service = this.responder.createService({
      name: `${os.hostname().slice(0, 30)}-${this.o.selfId.slice(0, 8)}`,
      type: 'shoal',
      port: this.o.port,
      txt: { id: this.o.selfId, v: String(PROTOCOL_VERSION), sf: this.o.fingerprints.join(','), link: this.o.link, caps: 'range,have-wait,leases' },
      ...(ifaces.length ? { restrictedAddresses: ifaces } : {}),
      disabledIpv6: true,
    });
    this.service.on('name-change', (name: string) => this.o.log('info', 'mDNS name conflict: advertising under a new name', { name }));
    await this.service.advertise();
    if (this.o.aptProxyPort) {
      // What squid-deb-proxy-client and auto-apt-proxy look for: machines without shoal find an apt proxy.
      this.aptService = this.responder.createService({
        name: `shoal-${os.hostname().slice(0, 30)}-${this.o.selfId.slice(0, 8)}`, type: 'apt_proxy', port: this.o.aptProxyPort,
        ...(ifaces.length ? { restrictedAddresses: ifaces } : {}), disabledIpv6: true,
      });
      await this.aptService.advertise();
    }
    const addrs = ifaces.length ? interfaceAddresses(ifaces) : [undefined];
    for (const ip of addrs) {
      // Bound to 0.0.0.0: a socket bound to a unicast address never sees multicast on Linux.
      const m = makeMdns({ ...(ip ? { interface: ip } : {}), bind: '0.0.0.0', reuseAddr: true, loopback: true });
      m.on('response', (res: { answers?: Answer[]; additionals?: Answer[] }, rinfo: { address: string }) => this.onResponse([...(res.answers ?? []), ...(res.additionals ?? [])], rinfo.address));
      m.on('error', (e: Error) => this.o.log('warn', 'mDNS browser error', { error: e.message }));
      this.browsers.push(m);
    }
    this.o.log('info', 'mDNS discovery started', { interfaces: ifaces, addresses: addrs.filter(Boolean) });
    this.query();
  }

  /** RFC 6762 §5.2: continuous querying, the interval doubling from 1 s up to one hour. */
  private query() {
    for (const m of this.browsers) m.query({ questions: [{ name: SERVICE, type: 'PTR' }] });
    this.queryTimer = setTimeout(() => this.query(), this.interval);
    this.queryTimer.unref();
    this.interval = Math.min(this.interval * 2, MAX_QUERY_INTERVAL_MS);
  }

  private takeBudget(): boolean {
    const now = Date.now();
    const per = this.o.newPerSecond ?? 20;
    this.budget = Math.min(per, this.budget + ((now - this.lastRefill) / 1000) * per);
    this.lastRefill = now;
    if (this.budget < 1) return false;
    this.budget -= 1;
    return true;
  }

  private onResponse(records: Answer[], from: string) {
    const now = Date.now();
    for (const r of records) if (r.type === 'A' && typeof r.data === 'string') {
      if ((r.ttl ?? 0) === 0) this.hosts.delete(r.name);
      else if (this.hosts.size < 4096 || this.hosts.has(r.name)) this.hosts.set(r.name, { ip: r.data, expires: now + (r.ttl ?? 120) * 1000 });
    }
    const instances = new Set<string>();
    for (const r of records) {
      if (r.type === 'PTR' && r.name === SERVICE && typeof r.data === 'string') instances.add(r.data);
      if ((r.type === 'SRV' || r.type === 'TXT') && r.name.endsWith(`.${SERVICE}`)) instances.add(r.name);
    }
    for (const inst of instances) {
      const srv = records.find((r) => r.type === 'SRV' && r.name === inst);
      const txt = records.find((r) => r.type === 'TXT' && r.name === inst);
      const ptr = records.find((r) => r.type === 'PTR' && r.data === inst);
      const goodbye = [srv, ptr].some((r) => r && r.ttl === 0);
      const fields = parseTxt(txt?.data);
      const id = fields.id;
      if (!id || !/^[A-Za-z0-9_-]{8,64}$/.test(id) || id === this.o.selfId) continue;
      const srvData = srv?.data as { port?: number; target?: string } | undefined;
      // Another site, or another protocol (a goodbye without TXT is judged by its source alone).
      if (txt && (!(fields.sf ?? '').split(',').some((f) => this.o.fingerprints.includes(f)) || (fields.link ?? 'plain') !== this.o.link || fields.v !== String(PROTOCOL_VERSION))) continue;
      if (goodbye) {
        void this.o.table.goodbye(id, from);
        continue;
      }
      if (!txt) continue;
      if (!srvData?.port || !srvData.target) continue;
      const host = this.hosts.get(srvData.target);
      const ip = host && host.expires > now ? host.ip : undefined;
      if (!ip) continue;
      // A loopback or unspecified address from another host is a lie (or a misconfiguration).
      if (isLoopbackOrUnspecified(ip) && !from.startsWith('127.')) continue;
      const ttl = Math.max(1, Math.min(srv?.ttl ?? 120, 4500));
      if (this.o.table.knowsMdns(id, ip, srvData.port)) {
        this.o.table.addAddress(ip, srvData.port, 'mdns', { expectId: id, expiresAt: now + ttl * 1000 });
        continue;
      }
      if (!this.takeBudget()) { this.dropped++; continue; }
      this.o.table.addAddress(ip, srvData.port, 'mdns', { expectId: id, expiresAt: now + ttl * 1000 });
      void this.o.table.probeAll();
    }
  }

  async stop(): Promise<void> {
    if (this.queryTimer) clearTimeout(this.queryTimer);
    for (const m of this.browsers) m.destroy();
    this.browsers = [];
    // shutdown() sends goodbye packets (TTL 0) so peers drop us at once.
    await this.responder?.shutdown().catch(() => {});
  }
}

function parseTxt(data: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const items = Array.isArray(data) ? data : data ? [data] : [];
  for (const item of items.slice(0, 32)) {
    const s = Buffer.isBuffer(item) ? item.toString('utf8') : String(item);
    const i = s.indexOf('=');
    if (i > 0 && s.length <= 255) out[s.slice(0, i)] = s.slice(i + 1);
  }
  return out;
}
