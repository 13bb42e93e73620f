/**
 * Daemon configuration: defaults ← JSON file ← environment (SHOAL_*) ← flags.
 * Every key is validated; an error names the key, where it came from and why.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ShoalError } from '../errors.js';
import { parseDuration, parseSize } from '../../manifests/units.js';
import cron from 'node-cron';
import { parseWindow } from '../schedule/windows.js';
import { DEFAULT_REGISTRIES, type Registry } from '../oci/reference.js';

export interface HostPort { host: string; port: number }

export interface Config {
  peerListen: HostPort;
  /** Address peers should use to reach us when peerListen is a wildcard; default: the listen address. */
  advertiseHost?: string;
  adminListen: HostPort;
  /** The apt proxy's listener ('' or "off" in a config: none). */
  aptListen?: HostPort;
  /** Keyring files, or folders of *.gpg / *.asc, that apt Release signatures are checked against. */
  aptKeyrings: string[];
  /** The OCI pull mirror's listener ('' or "off": none). */
  ociListen?: HostPort;
  /** Answer manifests by tag (always resolved against the upstream registry, never a peer). */
  ociResolve: boolean;
  /** Upstream registries the mirror pulls from: the name clients use and its API's base URL. */
  ociRegistries: Registry[];
  agentSocket?: string;
  cacheDir: string;
  /** Peer id and accepted sequences; default $STATE_DIRECTORY, else cacheDir. */
  stateDir?: string;
  cacheMaxBytes: number;
  trustedKeys: string[];
  threshold: number;
  staticPeers: HostPort[];
  discovery: 'mdns' | 'static';
  /** Cap on known peers (and twice that on addresses), against floods of fake announcements. */
  maxPeers: number;
  interfaces: string[];
  siteId: string;
  /**
   * Shared secret(s) of the site: peer links are TLS 1.3 with a key derived from it, other
   * sites ignored. During a rotation the current one first, then the previous one.
   */
  siteSecret?: string[];
  /** A file holding the site secret(s), one per line (current first), e.g. a systemd credential. */
  siteSecretFile?: string;
  originMaxBytesPerSec: number;
  /** An origin body slower than this over originMinRateWindowMs is cut and resumed elsewhere or later (0 = never). */
  originMinBytesPerSec: number;
  originMinRateWindowMs: number;
  uploadMaxBytesPerSec: number;
  chunkConcurrency: number;
  originConcurrency: number;
  leaseTtlMs: number;
  requestTimeoutMs: number;
  /** A transfer slower than this (after a grace second) is a stall. */
  minPeerBytesPerSec: number;
  banMs: number;
  /** Chunks per origin lease: one ranged GET fetches the run. */
  leaseRunChunks: number;
  /** A download with no source for this long fails with `unavailable`. */
  noProgressTimeoutMs: number;
  maxManifestBytes: number;
  /** Signed channel pointers to watch; a newer version is prefetched by the site. */
  channels: Array<{ url: string; cron?: string }>;
  /** Default schedule of channel polls (cron, seconds allowed) and the random delay added to each. */
  channelCron: string;
  channelJitterMs: number;
  /** Origin fetches only inside these daily windows ("22:00-06:00"); empty = any time. */
  originWindows: string[];
  /** Upload rate by time of day; outside every window uploadMaxBytesPerSec applies. */
  uploadSchedule: Array<{ window: string; bytesPerSec: number }>;
  /** Cache GC: when use passes high × cacheMaxBytes, evict down to low × cacheMaxBytes. */
  gcCron: string;
  cacheHighWatermark: number;
  cacheLowWatermark: number;
  /** Scrub: re-hash every stored chunk on this schedule ('' = never), at most scrubMaxBytesPerSec. */
  scrubCron: string;
  scrubMaxBytesPerSec: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export const DEFAULTS: Config = {
  peerListen: { host: '0.0.0.0', port: 7400 },
  adminListen: { host: '127.0.0.1', port: 7401 },
  aptListen: { host: '127.0.0.1', port: 3142 },
  aptKeyrings: ['/etc/apt/trusted.gpg', '/etc/apt/trusted.gpg.d', '/etc/apt/keyrings', '/usr/share/keyrings'],
  ociListen: { host: '127.0.0.1', port: 7402 },
  ociResolve: false,
  ociRegistries: DEFAULT_REGISTRIES,
  cacheDir: '/var/cache/shoal',
  cacheMaxBytes: 20 * 2 ** 30,
  trustedKeys: [],
  threshold: 1,
  staticPeers: [],
  discovery: 'static',
  maxPeers: 256,
  interfaces: [],
  siteId: 'default',
  originMaxBytesPerSec: 0,
  originMinBytesPerSec: 16 * 1024,
  originMinRateWindowMs: 30_000,
  uploadMaxBytesPerSec: 0,
  chunkConcurrency: 4,
  originConcurrency: 2,
  leaseTtlMs: 10_000,
  requestTimeoutMs: 30_000,
  minPeerBytesPerSec: 256 * 1024,
  banMs: 60_000,
  leaseRunChunks: 8,
  noProgressTimeoutMs: 300_000,
  maxManifestBytes: 32 << 20,
  channels: [],
  channelCron: '*/5 * * * *',
  channelJitterMs: 30_000,
  originWindows: [],
  uploadSchedule: [],
  gcCron: '*/15 * * * *',
  cacheHighWatermark: 0.9,
  cacheLowWatermark: 0.8,
  scrubCron: '40 3 * * *',
  scrubMaxBytesPerSec: 32 << 20,
  logLevel: 'info',
};

type Parser = (v: unknown, key: string) => unknown;

const bad = (key: string, why: string) => new ShoalError('bad-config', `config key ${key}: ${why}`);

function hostPort(v: unknown, key: string): HostPort {
  if (typeof v !== 'string') throw bad(key, 'expected "host:port"');
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw bad(key, `expected "host:port", got ${JSON.stringify(v)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function list(item: Parser): Parser {
  return (v, key) => {
    const arr = typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v;
    if (!Array.isArray(arr)) throw bad(key, 'expected a list');
    if (arr.length > 1024) throw bad(key, 'too many entries (max 1024)');
    return arr.map((x, i) => item(x, `${key}[${i}]`));
  };
}

function string(re?: RegExp, hint?: string): Parser {
  return (v, key) => {
    if (typeof v !== 'string' || v.length === 0 || v.length > 4096) throw bad(key, 'expected a non-empty string');
    if (re && !re.test(v)) throw bad(key, hint ?? `must match ${re}`);
    return v;
  };
}

function integer(min: number, max: number): Parser {
  return (v, key) => {
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) throw bad(key, `expected a whole number from ${min} to ${max}`);
    return n;
  };
}

const size: Parser = (v, key) => {
  try {
    return parseSize(typeof v === 'number' ? v : String(v), key);
  } catch {
    throw bad(key, `expected a size like 20GiB or a number of bytes, got ${JSON.stringify(v)}`);
  }
};

const duration: Parser = (v, key) => {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  try {
    return parseDuration(String(v), key);
  } catch {
    throw bad(key, `expected a duration like 10s or milliseconds, got ${JSON.stringify(v)}`);
  }
};

function oneOf<T extends string>(...values: T[]): Parser {
  return (v, key) => {
    if (!values.includes(v as T)) throw bad(key, `expected one of ${values.join(', ')}`);
    return v;
  };
}

function fraction(v: unknown, key: string): number {
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !(n > 0 && n <= 1)) throw bad(key, 'expected a fraction between 0 and 1');
  return n;
}

const cronExpr: Parser = (v, key) => {
  if (typeof v !== 'string' || !cron.validate(v)) throw bad(key, `expected a cron expression, got ${JSON.stringify(v)}`);
  return v;
};

const windowText: Parser = (v, key) => {
  if (typeof v !== 'string') throw bad(key, 'expected "HH:MM-HH:MM"');
  parseWindow(v, key);
  return v;
};

function objectList(fields: Record<string, Parser>, required: string[]): Parser {
  return (v, key) => {
    if (!Array.isArray(v) || v.length > 256) throw bad(key, 'expected a list (at most 256)');
    return v.map((item, i) => {
      const k = `${key}[${i}]`;
      if (typeof item !== 'object' || item === null || Array.isArray(item)) throw bad(k, 'expected an object');
      const out: Record<string, unknown> = {};
      for (const r of required) if ((item as Record<string, unknown>)[r] === undefined) throw bad(`${k}.${r}`, 'is required');
      for (const [f, val] of Object.entries(item as Record<string, unknown>)) {
        const parse = fields[f];
        if (!parse) throw bad(`${k}.${f}`, 'is not a known field');
        out[f] = parse(val, `${k}.${f}`);
      }
      return out;
    });
  };
}

const httpUrl: Parser = (v, key) => {
  try {
    const u = new URL(String(v));
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
    return String(v);
  } catch {
    throw bad(key, `expected an http(s) URL, got ${JSON.stringify(v)}`);
  }
};

const boolean: Parser = (v, key) => {
  if (v === true || v === 'true' || v === '1') return true;
  if (v === false || v === 'false' || v === '0') return false;
  throw bad(key, 'expected true or false');
};

/** `{host, url}`, or "host=url" in the environment and on the command line. */
const registry: Parser = (v, key) => {
  const o = typeof v === 'string' ? { host: v.split('=')[0], url: v.split('=').slice(1).join('=') } : v;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw bad(key, 'expected {"host": …, "url": …} or "host=url"');
  const { host, url, ...rest } = o as Record<string, unknown>;
  if (Object.keys(rest).length) throw bad(`${key}.${Object.keys(rest)[0]}`, 'is not a known field');
  if (typeof host !== 'string' || !/^[a-z0-9.-]{1,253}(?::\d{1,5})?$/.test(host)) throw bad(`${key}.host`, 'expected a lower-case registry host[:port]');
  return { host, url: (httpUrl(url, `${key}.url`) as string).replace(/\/+$/, '') };
};

const PARSERS: Record<keyof Config, Parser> = {
  peerListen: hostPort,
  advertiseHost: string(/^[A-Za-z0-9.:-]+$/, 'expected a host name or address'),
  adminListen: hostPort,
  aptListen: (v, key) => (v === '' || v === 'off' ? undefined : hostPort(v, key)),
  aptKeyrings: list(string()),
  ociListen: (v, key) => (v === '' || v === 'off' ? undefined : hostPort(v, key)),
  ociResolve: boolean,
  ociRegistries: (v, key) => {
    const out = list(registry)(v, key) as Registry[];
    if (new Set(out.map((r) => r.host)).size !== out.length) throw bad(key, 'a registry is named twice');
    return out;
  },
  agentSocket: string(),
  cacheDir: string(),
  stateDir: string(),
  cacheMaxBytes: size,
  trustedKeys: list(string()),
  threshold: integer(1, 32),
  staticPeers: list(hostPort),
  discovery: oneOf('mdns', 'static'),
  maxPeers: integer(1, 4096),
  interfaces: list(string(/^[A-Za-z0-9._:-]{1,64}$/, 'expected an interface name or address')),
  siteId: string(/^[A-Za-z0-9._-]{1,64}$/, 'use letters, digits, . _ - (at most 64)'),
  siteSecret: (v, key) => {
    const one = string(/^\S{16,256}$/, 'expected 16 to 256 characters without spaces');
    const list = Array.isArray(v) ? v : [v];
    if (list.length < 1 || list.length > 4) throw bad(key, 'expected a secret, or a list of 1 to 4 (the current first)');
    return list.map((x, i) => one(x, Array.isArray(v) ? `${key}[${i}]` : key));
  },
  siteSecretFile: string(),
  originMaxBytesPerSec: size,
  originMinBytesPerSec: size,
  originMinRateWindowMs: duration,
  uploadMaxBytesPerSec: size,
  chunkConcurrency: integer(1, 64),
  originConcurrency: integer(1, 32),
  leaseTtlMs: duration,
  requestTimeoutMs: duration,
  minPeerBytesPerSec: size,
  banMs: duration,
  leaseRunChunks: integer(1, 64),
  noProgressTimeoutMs: duration,
  maxManifestBytes: size,
  channels: objectList({ url: httpUrl, cron: cronExpr }, ['url']),
  channelCron: cronExpr,
  channelJitterMs: duration,
  originWindows: list(windowText),
  uploadSchedule: objectList({ window: windowText, bytesPerSec: size }, ['window', 'bytesPerSec']),
  gcCron: cronExpr,
  cacheHighWatermark: fraction,
  cacheLowWatermark: fraction,
  scrubCron: (v: unknown, key: string) => (v === '' ? '' : cronExpr(v, key)),
  scrubMaxBytesPerSec: size,
  logLevel: oneOf('debug', 'info', 'warn', 'error'),
};

export const CONFIG_KEYS = Object.keys(PARSERS) as (keyof Config)[];

const envName = (k: string) => `SHOAL_${k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
const flagName = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function apply(target: Record<string, unknown>, source: Record<string, unknown>, where: string) {
  for (const [k, v] of Object.entries(source)) {
    const parse = PARSERS[k as keyof Config];
    if (!parse) throw new ShoalError('bad-config', `${where}: unknown config key "${k}" (known: ${CONFIG_KEYS.join(', ')})`);
    try {
      target[k] = parse(v, k);
    } catch (e) {
      throw new ShoalError('bad-config', `${where}: ${(e as Error).message}`);
    }
  }
}

/** The systemd credential (LoadCredential=) that carries the site secret when the config names none. */
export const SITE_SECRET_CREDENTIAL = 'shoal.site-secret';

export interface ConfigSources {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Already split flags, e.g. { cacheDir: '/tmp/x' } from --cache-dir. */
  flags?: Record<string, unknown>;
}

export async function loadConfig(src: ConfigSources = {}): Promise<Config> {
  const cfg: Record<string, unknown> = { ...DEFAULTS };
  // systemd hands us our directories; they are better defaults than the compiled-in ones.
  const env = src.env ?? process.env;
  if (env.CACHE_DIRECTORY) cfg.cacheDir = env.CACHE_DIRECTORY.split(':')[0];
  if (env.STATE_DIRECTORY) cfg.stateDir = env.STATE_DIRECTORY.split(':')[0];
  if (env.RUNTIME_DIRECTORY) cfg.agentSocket = path.join(env.RUNTIME_DIRECTORY.split(':')[0]!, 'agent.sock');
  if (src.file) {
    let text: string;
    try {
      const st = await fs.stat(src.file);
      if (st.size > 1 << 20) throw new Error('larger than 1 MiB');
      text = await fs.readFile(src.file, 'utf8');
    } catch (e) {
      throw new ShoalError('bad-config', `config file ${src.file}: ${(e as Error).message}`);
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new ShoalError('bad-config', `config file ${src.file} is not JSON: ${(e as Error).message}`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new ShoalError('bad-config', `config file ${src.file} must hold a JSON object`);
    // Relative paths in a file are relative to the file.
    const o = obj as Record<string, unknown>;
    const base = path.dirname(path.resolve(src.file));
    for (const k of ['cacheDir', 'stateDir', 'agentSocket', 'siteSecretFile'] as const) if (typeof o[k] === 'string') o[k] = path.resolve(base, o[k] as string);
    if (Array.isArray(o.trustedKeys)) o.trustedKeys = o.trustedKeys.map((s) => (typeof s === 'string' && !s.startsWith('ed25519:') ? path.resolve(base, s) : s));
    apply(cfg, o, `config file ${src.file}`);
  }
  const fromEnv: Record<string, unknown> = {};
  for (const k of CONFIG_KEYS) if (env[envName(k)] !== undefined) fromEnv[k] = env[envName(k)];
  apply(cfg, fromEnv, 'environment');
  apply(cfg, src.flags ?? {}, 'command line');
  const c = cfg as unknown as Config;
  if (c.cacheLowWatermark > c.cacheHighWatermark) throw new ShoalError('bad-config', 'config key cacheLowWatermark: must not be above cacheHighWatermark');
  // The unit's LoadCredential=: the secret root keeps in /etc/credstore, readable by our dynamic user only as this copy.
  const credential = env.CREDENTIALS_DIRECTORY ? path.join(env.CREDENTIALS_DIRECTORY, SITE_SECRET_CREDENTIAL) : undefined;
  // The package installs it empty (LoadCredential= fails on a missing file): empty means an open site.
  if (!c.siteSecret && !c.siteSecretFile && credential && (await fs.readFile(credential, 'utf8').then((x) => x.trim() !== '', () => false))) c.siteSecretFile = credential;
  if (c.siteSecretFile && !c.siteSecret) {
    const text = await fs.readFile(c.siteSecretFile, 'utf8').catch((e) => { throw new ShoalError('bad-config', `config key siteSecretFile: ${(e as Error).message}`); });
    const secrets = text.split('\n').map((l) => l.trim()).filter(Boolean);
    if (!secrets.length || secrets.length > 4 || !secrets.every((x) => /^\S{16,256}$/.test(x))) {
      throw new ShoalError('bad-config', 'config key siteSecretFile: expected 1 to 4 lines (the current secret first), each 16 to 256 characters without spaces');
    }
    c.siteSecret = secrets;
  }
  if (c.trustedKeys.length > 0 && c.threshold > c.trustedKeys.length) {
    throw new ShoalError('bad-config', `config key threshold: ${c.threshold} is more than the ${c.trustedKeys.length} trusted key(s)`);
  }
  return c;
}

/** The flag spellings (`--cache-dir`) of every key, for the CLI's parseArgs table. */
export function configFlags(): Record<string, { type: 'string' }> {
  return Object.fromEntries(CONFIG_KEYS.map((k) => [flagName(k), { type: 'string' as const }]));
}

export function flagsToConfig(values: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of CONFIG_KEYS) if (values[flagName(k)] !== undefined) out[k] = values[flagName(k)];
  return out;
}


const LOOPBACK = /^(127\.|::1$|localhost$)/;
const WILDCARD = new Set(['0.0.0.0', '::', '']);

/**
 * What a daemon says once at start when it runs but will surprise its operator:
 * the settings that look fine until the first fetch (or the first LAN sniffer).
 */
export function startupWarnings(c: Config): Array<{ code: string; message: string }> {
  const out: Array<{ code: string; message: string }> = [];
  const peer = `${c.peerListen.host}:${c.peerListen.port}`;
  if (!c.trustedKeys.length) {
    out.push({ code: 'no-trusted-keys', message: 'no trustedKeys: no shoal manifest can be verified, so every `shoal fetch` of a published release fails (apt, OCI and --url fetches carry their own hashes and work); add the publisher\'s .pub (shoal site init makes one)' });
  }
  if (!c.siteSecret?.length && !LOOPBACK.test(c.peerListen.host)) {
    out.push({ code: 'open-site', message: `open site on ${peer}: peer links are plain HTTP, readable by anyone on the LAN, and any machine may join; set siteSecret (shoal site init makes one)` });
  }
  if (WILDCARD.has(c.peerListen.host) && !c.interfaces.length) {
    out.push({ code: 'all-interfaces', message: `peerListen ${peer} answers on every interface of this machine and mDNS runs on all of them: set interfaces to the LAN ones` });
  }
  return out;
}
