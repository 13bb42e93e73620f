/** The agent verbs of `shoal`: fetch, peers, daemon. */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { args, EXIT, required, type Io } from '../manifests/cli-kit.js';
import { ShoalError, fromSystemError } from '../daemon/errors.js';
import { syncDir } from '../manifests/atomic-file.js';
import { formatBytes, parseDuration, parseSize } from '../manifests/units.js';
import type { SavingsTotals } from '../daemon/admin/savings.js';
import { DAEMON_HELP, runDaemon } from '../daemon/cli.js';
import { AgentClient, type FetchStatus } from './client.js';
import { extractBundles } from './extract.js';

export const AGENT_HELP: Record<string, string> = {
  fetch: `shoal fetch URL (-o PATH | --extract DIR) [--channel] [--now] [--api URL | --socket PATH] [--json]
       shoal fetch --url URL --sha256 HEX [--size N] -o PATH [--now] [--json]
       shoal fetch --cancel ID
  URL is a manifest, or with --channel a signed channel pointer (the latest of that channel).
  --url with --sha256: any plain file whose SHA-256 you know (no manifest); fetched once per
  site, and written only once the whole file matched the hash (a wrong hash fails, blob-mismatch).
  The same file over plain HTTP: http://127.0.0.1:7401/sha256/HEX?url=URL (Range and HEAD work).
  --now uses the origin at once even outside the configured origin windows.
  Ask the local shoald for an artifact, wait until every byte is verified, and write it:
  a one-file artifact to PATH, a several-file artifact under the directory PATH.
  --extract unpacks the artifact's tar bundle(s) into DIR safely: regular files and
  directories only, nothing outside DIR, swapped into place only when complete.
  Files are written to a temp name, checked against the manifest's SHA-256, fsync'ed and renamed.
  The fetch's id is printed first; --cancel ID ends it (a blob another fetch still needs goes on).
  Exit 0 only when every file is verified; 10 if shoald cannot be reached; 11 if the fetch failed.`,
  peers: `shoal peers [--api URL | --socket PATH] [--json]
  List the peers the local shoald knows, with health and bans.`,
  status: `shoal status [--api URL | --socket PATH] [--json]
  The local daemon: peer id, site, peers, active downloads, cache use, and the last 24 h's bytes by kind.`,
  stats: `shoal stats [--period 24h|7d|…] [--api URL | --socket PATH] [--json]
  What the site saved over the period (at most 31 days): per kind (native, url, apt, oci) the bytes
  its machines got, and from where: the origin (the uplink), peers, their own cache, or passed
  through unshared (no known hash). Gathered from every healthy member of the site.`,
  cache: `shoal cache ls|pin|unpin|rm|gc [NAME VERSION] [--target SIZE] [--api URL | --socket PATH] [--json]
  ls: artifacts in the cache; pin/unpin NAME VERSION: keep (or stop keeping) them from eviction;
  rm NAME VERSION: remove them (blobs other artifacts share stay); gc [--target SIZE]: evict
  least recently used, unpinned blobs down to SIZE (default 90 % of the cache budget).`,
  export: `shoal export MANIFEST [MANIFEST ...] -o site.tar [--api URL | --socket PATH]
  Write the named cached artifacts (manifest files or NAME/VERSION) with their blobs into one
  archive, for carrying to an air-gapped site.`,
  import: `shoal import site.tar [--api URL | --socket PATH] [--json]
  Give an archive to the local daemon. It verifies every manifest (trusted keys, expiry,
  rollback) and every chunk before keeping anything; a tampered archive changes nothing.`,
  daemon: DAEMON_HELP,
};

const conn = { api: { type: 'string' as const }, socket: { type: 'string' as const }, json: { type: 'boolean' as const } };

function clientFrom(values: { api?: string; socket?: string }) {
  return new AgentClient({ api: values.api, socket: values.socket });
}

/** Runs fn with a client of the daemon picked by --api/--socket, closed whatever happens. */
async function withClient<T>(values: { api?: string; socket?: string }, fn: (client: AgentClient) => Promise<T>): Promise<T> {
  const client = clientFrom(values);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

function progressLine(s: FetchStatus): string {
  const pct = s.size ? ((100 * s.held) / s.size).toFixed(1) : '0.0';
  const state = s.stalled && s.stalled.reason !== 'origin-window' ? `stalled (${s.stalled.message})` : s.waiting ? 'waiting for origin window' : s.state;
  return `${state} ${pct}% ${formatBytes(s.held)}/${formatBytes(s.size)}  origin ${formatBytes(s.bytes.origin)}  peers ${formatBytes(s.bytes.peer)}`;
}

/** The terminal progress bar: bytes, rate, ETA and the share that came from peers, fitted to the terminal's width. */
export class ProgressBar {
  private samples: Array<{ t: number; held: number }> = [];
  constructor(private width = 28) {}

  /**
   * One line of at most `columns - 1` characters (a line as wide as the terminal wraps on
   * some terminals, and a wrapped line is redrawn as a new line each update). What gives
   * way first: the bar narrows to 10, then the share from peers, the name, the rate, the
   * byte counts and the bar go, in that order.
   */
  render(s: FetchStatus, now = Date.now(), columns = Infinity): string {
    this.samples.push({ t: now, held: s.held });
    while (this.samples.length > 2 && now - this.samples[0]!.t > 5000) this.samples.shift();
    const first = this.samples[0]!;
    const rate = now > first.t ? ((s.held - first.held) * 1000) / (now - first.t) : 0;
    const frac = s.size ? Math.min(1, s.held / s.size) : 0;
    const eta = s.stalled && s.stalled.reason !== 'origin-window' ? `stalled: ${s.stalled.message}`
      : s.waiting ? 'waiting for origin window'
        : rate > 0 && s.size > s.held ? `ETA ${formatEta((s.size - s.held) / rate)}` : s.state === 'done' ? 'done' : 'ETA --';
    const got = s.bytes.origin + s.bytes.peer;
    const parts = {
      name: s.name ? `${s.name} ${s.version}` : '',
      pct: `${(frac * 100).toFixed(0).padStart(3)}%`,
      bytes: `${formatBytes(s.held)}/${formatBytes(s.size)}`,
      rate: `${formatBytes(rate)}/s`,
      eta,
      share: got ? `${Math.round((100 * s.bytes.peer) / got)}% from peers` : '',
    };
    const max = Math.max(1, columns - 1);
    const line = (bar: number, drop: Set<string>) => {
      const filled = Math.round(frac * bar);
      const out = [drop.has('name') ? '' : parts.name, bar ? `[${'#'.repeat(filled)}${'.'.repeat(bar - filled)}]` : '', parts.pct,
        drop.has('bytes') ? '' : parts.bytes, drop.has('rate') ? '' : parts.rate, parts.eta, drop.has('share') ? '' : parts.share];
      return out.filter(Boolean).join(' ');
    };
    const drop = new Set<string>();
    let bar = this.width;
    let text = line(bar, drop);
    while (text.length > max && bar > 10) text = line(--bar, drop);
    for (const part of ['share', 'name', 'rate', 'bytes', 'bar']) {
      if (text.length <= max) break;
      if (part === 'bar') bar = 0; else drop.add(part);
      text = line(bar, drop);
    }
    return text.length > max ? `${text.slice(0, max - 1)}…` : text;
  }
}

function formatEta(secs: number): string {
  if (secs < 60) return `${Math.ceil(secs)}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m${String(Math.ceil(secs % 60)).padStart(2, '0')}s`;
  return `${Math.floor(secs / 3600)}h${String(Math.floor((secs % 3600) / 60)).padStart(2, '0')}m`;
}

/** A file's bytes from the daemon, hashed on the way; `check()` after the stream ends. */
async function hashedFile(client: AgentClient, s: FetchStatus, filePath: string, expectSha: string) {
  return hashed(await client.openFile(s.name!, s.version!, filePath), expectSha, filePath);
}

function hashed({ body }: { body: import('node:stream').Readable }, expectSha: string, filePath: string) {
  const hash = createHash('sha256');
  const stream = body.pipe(new Transform({ transform(c: Buffer, _e, cb) { hash.update(c); cb(null, c); } }));
  body.on('error', (e) => stream.destroy(e));
  return {
    stream,
    check() {
      const digest = hash.digest('hex');
      if (digest !== expectSha) throw new ShoalError('blob-mismatch', `${filePath}: received bytes hash to ${digest}, manifest says ${expectSha}`);
    },
  };
}

/** --url URL --sha256 HEX [--size N], checked here so a typo is a usage error, not a failed fetch. */
function byHashArgs(values: { url?: string; sha256?: string; size?: string }, positionals: string[]) {
  if (values.url === undefined && values.sha256 === undefined && values.size === undefined) return undefined;
  if (values.url === undefined || values.sha256 === undefined) throw new ShoalError('usage', '--url and --sha256 go together');
  if (positionals.length) throw new ShoalError('usage', '--url takes no manifest URL');
  if (!/^https?:\/\/[^\s]+$/.test(values.url) || !URL.canParse(values.url)) throw new ShoalError('usage', `--url: not an http(s) URL: ${values.url}`);
  const sha256 = values.sha256.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new ShoalError('usage', '--sha256 must be 64 hex characters');
  if (values.size !== undefined && !/^\d{1,16}$/.test(values.size)) throw new ShoalError('usage', `--size must be a byte count, got ${values.size}`);
  return { url: values.url, sha256, ...(values.size !== undefined ? { size: Number(values.size) } : {}) };
}

/** Streams one verified file from the daemon to dest atomically, hashing as it goes. */
async function saveFile(client: AgentClient, s: FetchStatus, filePath: string, dest: string, expectSha: string) {
  await saveStream(() => client.openFile(s.name!, s.version!, filePath), dest, expectSha, filePath);
}

async function saveStream(open: () => Promise<{ body: import('node:stream').Readable }>, dest: string, expectSha: string, label: string) {
  const src = hashed(await open(), expectSha, label);
  await fs.mkdir(path.dirname(dest), { recursive: true });
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.shoal-${process.pid}.tmp`);
  try {
    const out = createWriteStream(tmp, { mode: 0o644 });
    await pipeline(src.stream, out);
    src.check();
    const fh = await fs.open(tmp, 'r+');
    await fh.sync();
    await fh.close();
    await fs.rename(tmp, dest);
    await syncDir(path.dirname(dest));
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

async function cancelFetch(id: string, positionals: string[], values: { api?: string; socket?: string; json?: boolean }, io: Io): Promise<number> {
  if (positionals.length) throw new ShoalError('usage', '--cancel takes a fetch id and no URL');
  if (!/^[0-9a-f]{16}$/.test(id)) throw new ShoalError('usage', `--cancel: not a fetch id: ${id}`);
  const client = clientFrom(values);
  try {
    const s = await client.cancelFetch(id);
    if (values.json) io.out(JSON.stringify({ ok: true, fetch: s }));
    else io.out(`fetch ${id} (${s.name ?? '?'} ${s.version ?? ''}): ${s.state}`);
    return EXIT.ok;
  } finally {
    await client.close();
  }
}

async function fetchVerb(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = args(argv, {
    ...conn, output: { type: 'string', short: 'o' }, extract: { type: 'string' }, channel: { type: 'boolean' }, now: { type: 'boolean' }, cancel: { type: 'string' },
    url: { type: 'string' }, sha256: { type: 'string' }, size: { type: 'string' },
  });
  if (values.help) { io.out(AGENT_HELP.fetch!); return EXIT.ok; }
  if (values.cancel !== undefined) return cancelFetch(values.cancel, positionals, values, io);
  const byHash = byHashArgs(values, positionals);
  const url = byHash ? byHash.url : required(positionals[0], 'URL');
  if (!values.output === !values.extract) throw new ShoalError('usage', 'give exactly one of -o PATH or --extract DIR');
  if (byHash && (values.extract || values.channel)) throw new ShoalError('usage', '--url fetches one file: give -o PATH (no --extract, no --channel)');
  const out = (values.output ?? values.extract)!;
  // Found out now, not after the whole download: -o must not name a directory.
  if (values.output && (await fs.stat(values.output).then((st) => st.isDirectory(), () => false))) {
    throw new ShoalError('usage', `-o ${values.output} is a directory: name the file to write`);
  }
  const client = clientFrom(values);
  try {
    const job = await client.createFetch({ ...(byHash ?? (values.channel ? { channelUrl: url } : { manifestUrl: url })), ...(values.now ? { ignoreOriginWindow: true } : {}) });
    if (!values.json) io.err(`fetch ${job.id}`);
    let last = 0;
    const tty = !values.json && process.stderr.isTTY;
    const bar = new ProgressBar();
    const s = await client.waitFetch(job.id, {
      onProgress: (st) => {
        if (values.json) return;
        const now = Date.now();
        // A live bar on a terminal, never wider than it (\x1b[K clears what a longer line left).
        // Otherwise plain lines, one a second, only while bytes move: a fetch that fails prints its error alone.
        if (tty) process.stderr.write(`\r${bar.render(st, now, process.stderr.columns || 80)}\x1b[K`);
        else if ((st.state === 'running' && now - last >= 1000) || st.state === 'done') { io.err(progressLine(st)); last = now; }
      },
    }).catch((e) => { if (tty) process.stderr.write('\n'); throw e; });
    if (tty) process.stderr.write('\n');
    const written: string[] = [];
    if (byHash) {
      await saveStream(() => client.openBlob(byHash.sha256), out, byHash.sha256, url);
      written.push(out);
    } else if (values.extract) {
      const bundles = s.files.filter((f) => f.type === 'tar');
      if (!bundles.length) throw new ShoalError('usage', `${s.name} ${s.version} has no tar bundle to extract (publish it with --bundle or --tar)`);
      const checks: Array<() => void> = [];
      const r = await extractBundles(bundles.map((f) => async () => {
        const h = await hashedFile(client, s, f.path, f.blob);
        checks.push(() => h.check());
        return h.stream;
      }), out, {
        // Extraction runs while bytes stream in; only complete, matching bundles are moved into place.
        accept: () => checks.forEach((check) => check()),
      });
      written.push(`${out} (${r.files} files)`);
    } else {
      const single = s.files.length === 1;
      for (const f of s.files) {
        const dest = single ? out : path.join(out, ...f.path.split('/'));
        await saveFile(client, s, f.path, dest, f.blob);
        written.push(dest);
      }
    }
    if (values.json) io.out(JSON.stringify({ ok: true, fetch: s, written }));
    else {
      io.out(`${s.name ? `${s.name} ${s.version}` : url}: ${written.length} file(s) verified → ${out}`);
      io.out(`  from origin ${formatBytes(s.bytes.origin)}, from peers ${formatBytes(s.bytes.peer)}`);
    }
    return EXIT.ok;
  } catch (e) {
    if (e instanceof ShoalError && !['daemon-unreachable', 'usage'].includes(e.code)) {
      io.err(`shoal: error [${e.code}]: ${e.message}`);
      if (values.json) io.out(JSON.stringify({ ok: false, error: { code: e.code, message: e.message } }));
      return EXIT.failed;
    }
    throw e;
  } finally {
    await client.close();
  }
}

async function peersVerb(argv: string[], io: Io): Promise<number> {
  const { values } = args(argv, conn, false);
  if (values.help) { io.out(AGENT_HELP.peers!); return EXIT.ok; }
  return withClient(values, async (client) => {
    const peers = await client.peers();
    if (values.json) io.out(JSON.stringify({ peers }));
    else if (!peers.length) io.out('no peers known');
    else for (const p of peers) io.out(`${p.id}  ${p.address}  ${p.healthy ? 'healthy' : 'down'}${p.banned ? `  banned (${p.banReason})` : ''}`);
    return EXIT.ok;
  });
}

async function statusVerb(argv: string[], io: Io): Promise<number> {
  const { values } = args(argv, conn, false);
  if (values.help) { io.out(AGENT_HELP.status!); return EXIT.ok; }
  return withClient(values, async (client) => {
    const s = await client.status();
    if (values.json) io.out(JSON.stringify(s));
    else {
      io.out(`shoald ${s.peerId} · site ${s.site}`);
      io.out(s.link === 'plain' ? '  links      open site: peer links are plain HTTP (anyone on the LAN can read them; set siteSecret)' : '  links      private: TLS 1.3 with the site\'s pre-shared key');
      io.out(`  peers      ${s.peers.healthy} healthy of ${s.peers.known} known`);
      io.out(`  downloads  ${s.downloads.length} active`);
      io.out(`  cache      ${formatBytes(s.cache.usedBytes)} of ${formatBytes(s.cache.maxBytes)} in ${s.cache.blobs} blob(s)${s.cache.partial ? ` (${s.cache.partial} still arriving, reserved in full)` : ''}`);
      const rows = savingsRows(s.savings24h);
      if (rows.length) { io.out('  last 24 h'); for (const r of rows) io.out(`    ${r}`); }
    }
    return EXIT.ok;
  });
}

/** One line a kind that moved bytes: delivered, from origin / peers / cache / unshared, and the share the uplink was spared. */
export function savingsRows(t: SavingsTotals): string[] {
  const out: string[] = [];
  for (const [kind, r] of Object.entries(t) as Array<[string, SavingsTotals['apt']]>) {
    const total = r.origin + r.peer + r.local + r.unshared;
    if (!total) continue;
    const saved = Math.round((100 * (r.peer + r.local)) / total);
    out.push(`${kind.padEnd(6)} ${formatBytes(total).padStart(10)}  origin ${formatBytes(r.origin).padStart(10)}  peers ${formatBytes(r.peer).padStart(10)}  cache ${formatBytes(r.local).padStart(10)}  unshared ${formatBytes(r.unshared).padStart(10)}  saved ${saved}%`);
  }
  return out;
}

async function statsVerb(argv: string[], io: Io): Promise<number> {
  const { values } = args(argv, { ...conn, period: { type: 'string' } }, false);
  if (values.help) { io.out(AGENT_HELP.stats!); return EXIT.ok; }
  const period = values.period ?? '24h';
  parseDuration(period, '--period');
  return withClient(values, async (client) => {
    const s = await client.stats(period);
    if (values.json) { io.out(JSON.stringify(s)); return EXIT.ok; }
    const answered = s.peers.filter((p) => p.totals).length;
    io.out(`site savings since ${s.since} (${answered + 1} of ${s.peers.length + 1} members answered)`);
    const rows = savingsRows(s.site);
    for (const r of rows.length ? rows : ['nothing was fetched in this period']) io.out(`  ${r}`);
    for (const p of s.peers.filter((x) => x.error)) io.out(`  ${p.peerId}: no answer (${p.error})`);
    return EXIT.ok;
  });
}

async function cacheVerb(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = args(rest, { ...conn, target: { type: 'string' } });
  if (!sub || sub === '--help' || sub === '-h' || values.help) { io.out(AGENT_HELP.cache!); return EXIT.ok; }
  const nameVersion = () => [required(positionals[0], 'NAME'), required(positionals[1], 'VERSION')] as const;
  return withClient(values, async (client) => {
    switch (sub) {
      case 'ls': {
        const list = await client.artifacts();
        if (values.json) io.out(JSON.stringify({ artifacts: list }));
        else if (!list.length) io.out('the cache holds no artifacts');
        else for (const a of list) io.out(`${a.name} ${a.version}  seq ${a.sequence}  ${formatBytes(a.size)}  ${a.complete ? 'complete' : 'partial'}${a.pinned ? '  pinned' : ''}`);
        return EXIT.ok;
      }
      case 'pin': case 'unpin': {
        const [n, v] = nameVersion();
        await client.pin(n, v, sub === 'pin');
        io.out(`${sub === 'pin' ? 'pinned' : 'unpinned'} ${n} ${v}`);
        return EXIT.ok;
      }
      case 'rm': {
        const [n, v] = nameVersion();
        const r = await client.removeArtifact(n, v);
        io.out(`removed ${n} ${v}: ${r.blobsRemoved} blob(s), ${formatBytes(r.bytesFreed)} freed`);
        return EXIT.ok;
      }
      case 'gc': {
        const r = await client.gc(values.target ? parseSize(values.target, '--target') : undefined);
        if (values.json) io.out(JSON.stringify(r));
        else io.out(`freed ${formatBytes(r.freedBytes)}; ${formatBytes(r.usedBytes)} used${r.reached ? '' : ` (target ${formatBytes(r.targetBytes)} not reached: the rest is pinned or in use)`}`);
        return EXIT.ok;
      }
      default:
        throw new ShoalError('usage', `unknown cache command "${sub}" (ls, pin, unpin, rm, gc)`);
    }
  });
}

/** NAME/VERSION, or a manifest file whose signed name and version are used. */
async function artifactRef(spec: string): Promise<{ name: string; version: string }> {
  const st = await fs.stat(spec).catch(() => undefined);
  if (st?.isFile()) {
    if (st.size > 32 << 20) throw new ShoalError('too-large', `${spec} is too large to be a manifest`);
    const signed = (JSON.parse(await fs.readFile(spec, 'utf8')) as { signed?: { name?: unknown; version?: unknown } }).signed;
    if (typeof signed?.name !== 'string' || typeof signed.version !== 'string') throw new ShoalError('malformed', `${spec} is not a shoal manifest`);
    return { name: signed.name, version: signed.version };
  }
  const i = spec.indexOf('/');
  if (i <= 0) throw new ShoalError('usage', `"${spec}" is neither a manifest file nor NAME/VERSION`);
  return { name: spec.slice(0, i), version: spec.slice(i + 1) };
}

async function exportVerb(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = args(argv, { ...conn, output: { type: 'string', short: 'o' } });
  if (values.help) { io.out(AGENT_HELP.export!); return EXIT.ok; }
  if (!positionals.length) throw new ShoalError('usage', 'name at least one MANIFEST (a manifest file or NAME/VERSION)');
  const out = required(values.output, '-o');
  const refs = await Promise.all(positionals.map(artifactRef));
  const client = clientFrom(values);
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.shoal-${process.pid}.tmp`);
  try {
    await client.exportTo(refs, createWriteStream(tmp, { mode: 0o644 }));
    const fh = await fs.open(tmp, 'r+');
    await fh.sync();
    const { size } = await fh.stat();
    await fh.close();
    await fs.rename(tmp, out);
    io.out(`exported ${refs.map((r) => `${r.name} ${r.version}`).join(', ')} → ${out} (${formatBytes(size)})`);
    return EXIT.ok;
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  } finally {
    await client.close();
  }
}

async function importVerb(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = args(argv, conn);
  if (values.help) { io.out(AGENT_HELP.import!); return EXIT.ok; }
  const file = required(positionals[0], 'ARCHIVE');
  await fs.access(file).catch((e) => { throw fromSystemError(e, file); });
  return withClient(values, async (client) => {
    const r = await client.importFrom(createReadStream(file));
    if (values.json) io.out(JSON.stringify(r));
    else io.out(`imported ${r.artifacts.map((a) => `${a.name} ${a.version}`).join(', ')}: ${r.blobs} blob(s), ${formatBytes(r.bytes)}, every chunk verified`);
    return EXIT.ok;
  });
}

export const AGENT_VERBS: Record<string, (argv: string[], io: Io) => Promise<number>> = {
  fetch: fetchVerb,
  peers: peersVerb,
  status: statusVerb,
  stats: statsVerb,
  cache: cacheVerb,
  export: exportVerb,
  import: importVerb,
  daemon: runDaemon,
};
