/** The publisher's verbs of `shoal`: keygen, publish, sign, channel set, verify. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { canonicalBytes, sha256Hex } from './canonical.js';
import { digestFile } from './chunker.js';
import { ShoalError, fromSystemError } from './errors.js';
import { generateSigningKey, loadPublicKey, loadSigningKey, writeKeyPair } from './keys.js';
import { publish } from './publish.js';
import { CHANNEL_SCHEMA, DEFAULT_LIMITS, envelopeOf, validateManifestBody, type ChannelBody, type ManifestBody } from './schema.js';
import { serializeEnvelope, signEnvelope } from './sign.js';
import { parseDuration, parseSize } from './units.js';
import { documentKind, verifyChannel, verifyManifest, type Verified } from './verify.js';
import { args, EXIT, int, required, writeFileAtomic, type Io } from './cli-kit.js';

export const PUBLISHER_HELP: Record<string, string> = {
  keygen: `shoal keygen --out DIR [--name NAME] [--force]
  Make an Ed25519 signing key: DIR/NAME.key (PKCS#8 PEM, mode 0600) and
  DIR/NAME.pub (one line "ed25519:<base64url>", for trustedKeys). NAME defaults to "shoal".`,
  publish: `shoal publish PATH... --name N --version V --sequence S --key K [--key K2 ...]
        (--base-url URL | --url PATH=URL ...) [--chunk-size 4MiB] [--expires 30d]
        [--bundle | --tar] -o manifest.json
  Hash files (directories are walked) and write a signed shoal.manifest/v1.
  --bundle packs the inputs into NAME-VERSION.tar next to the output and publishes it;
  --tar marks a single existing tar file as a bundle.`,
  sign: `shoal sign DOCUMENT --key K [--key K2 ...] -o OUT
  Add signatures to a manifest or channel (k-of-n publishing).`,
  channel: `shoal channel set --channel C --manifest M --manifest-url URL --key K
        [--sequence S] [--expires 7d] -o channel.json
  Point channel C of the manifest's name at that manifest (sequence defaults to the manifest's).`,
  verify: `shoal verify DOCUMENT --trust PUBKEY [--trust ...] [--threshold K] [--last-sequence N]
        [--file PATH | --file MANIFEST_PATH=LOCAL_PATH ...] [--manifest M] [--json]
  Check a manifest or channel: schema, signatures (k of n), expiry, rollback, and with
  --file the bytes of the named files; for a channel, --manifest checks the manifest it names.
  Exit codes: 0 ok, 2 usage, 3 invalid document, 4 untrusted signatures, 5 expired,
  6 rollback, 7 file bytes differ, 8 bad key, 1 other errors.`,
};

async function readDoc(file: string): Promise<Buffer> {
  try {
    const st = await fs.stat(file);
    if (st.size > DEFAULT_LIMITS.maxBytes) throw new ShoalError('too-large', `${file} is ${st.size} bytes, more than ${DEFAULT_LIMITS.maxBytes}`);
    return await fs.readFile(file);
  } catch (e) {
    throw fromSystemError(e, file);
  }
}

async function readJson(file: string): Promise<unknown> {
  const bytes = await readDoc(file);
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (e) {
    throw new ShoalError('malformed', `${file} is not JSON: ${(e as Error).message}`, { path: '$' });
  }
}

async function keygen(argv: string[], io: Io): Promise<number> {
  const { values } = args(argv, { out: { type: 'string' }, name: { type: 'string' }, force: { type: 'boolean' } }, false);
  if (values.help) return help(io, 'keygen');
  const key = generateSigningKey();
  const { keyFile, pubFile } = await writeKeyPair(required(values.out, '--out'), key, { name: values.name, force: values.force });
  io.out(`private key: ${keyFile} (keep it secret)`);
  io.out(`public key:  ${pubFile}`);
  io.out(`key id:      ${key.keyid}`);
  io.out(key.publicKey.text);
  return EXIT.ok;
}

async function publishVerb(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = args(argv, {
    name: { type: 'string' }, version: { type: 'string' }, sequence: { type: 'string' },
    key: { type: 'string', multiple: true }, 'base-url': { type: 'string' }, url: { type: 'string', multiple: true },
    'chunk-size': { type: 'string' }, expires: { type: 'string' }, bundle: { type: 'boolean' }, tar: { type: 'boolean' },
    output: { type: 'string', short: 'o' },
  });
  if (values.help) return help(io, 'publish');
  if (positionals.length === 0) throw new ShoalError('usage', 'publish needs at least one PATH');
  const out = required(values.output, '-o');
  const urls: Record<string, string> = {};
  for (const u of values.url ?? []) {
    const i = u.indexOf('=');
    if (i <= 0) throw new ShoalError('usage', `--url takes PATH=URL, got "${u}"`);
    urls[u.slice(0, i)] = u.slice(i + 1);
  }
  if (!values['base-url'] && !values.url) throw new ShoalError('usage', '--base-url (or --url PATH=URL) is required');
  if (values['base-url'] !== undefined && !isHttpUrl(values['base-url'])) {
    throw new ShoalError('usage', `--base-url: not an http(s) URL: ${values['base-url']}`);
  }
  const keys = await Promise.all(required(values.key, '--key').map(loadSigningKey));
  const res = await publish({
    inputs: positionals,
    name: required(values.name, '--name'),
    version: required(values.version, '--version'),
    sequence: required(int(values.sequence, '--sequence'), '--sequence'),
    keys,
    baseUrl: values['base-url'],
    urls,
    chunkSize: values['chunk-size'] ? parseSize(values['chunk-size'], '--chunk-size') : undefined,
    expiresInMs: parseDuration(values.expires ?? '30d', '--expires'),
    bundle: values.bundle,
    bundleDir: path.dirname(out),
    tar: values.tar,
  });
  // Validate what we produce with the same rules consumers apply.
  verifyManifest(serializeEnvelope(res.envelope), { keys: keys.map((k) => k.publicKey), threshold: keys.length });
  await writeFileAtomic(out, serializeEnvelope(res.envelope));
  const m = res.envelope.signed;
  io.out(`manifest ${m.name} ${m.version} (sequence ${m.sequence}) → ${out}`);
  io.out(`id ${res.id}`);
  for (const f of m.files) io.out(`  ${f.path}  ${f.size} bytes  ${f.chunks.length} chunks  sha256 ${f.sha256}`);
  if (res.bundlePath) io.out(`bundle written to ${res.bundlePath}: upload it to ${m.files[0]!.urls[0] ?? 'your origin'}`);
  return EXIT.ok;
}

async function signVerb(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = args(argv, { key: { type: 'string', multiple: true }, output: { type: 'string', short: 'o' } });
  if (values.help) return help(io, 'sign');
  const file = required(positionals[0], 'DOCUMENT');
  const raw = await readJson(file);
  const env = envelopeOf(raw, DEFAULT_LIMITS);
  const keys = await Promise.all(required(values.key, '--key').map(loadSigningKey));
  const signed = signEnvelope(env.signed, keys, env.signatures);
  await writeFileAtomic(required(values.output, '-o'), serializeEnvelope(signed));
  io.out(`${signed.signatures.length} signature(s) on ${file} → ${values.output}`);
  return EXIT.ok;
}

async function channelVerb(argv: string[], io: Io): Promise<number> {
  if (argv[0] !== 'set') {
    if (argv[0] === '--help' || argv[0] === '-h') return help(io, 'channel');
    throw new ShoalError('usage', 'usage: shoal channel set ... (see shoal channel --help)');
  }
  const { values } = args(argv.slice(1), {
    channel: { type: 'string' }, manifest: { type: 'string' }, 'manifest-url': { type: 'string' },
    key: { type: 'string', multiple: true }, sequence: { type: 'string' }, expires: { type: 'string' },
    output: { type: 'string', short: 'o' },
  }, false);
  if (values.help) return help(io, 'channel');
  const raw = await readJson(required(values.manifest, '--manifest'));
  const manifest = validateManifestBody(envelopeOf(raw, DEFAULT_LIMITS).signed);
  const keys = await Promise.all(required(values.key, '--key').map(loadSigningKey));
  const body: ChannelBody = {
    schema: CHANNEL_SCHEMA,
    channel: required(values.channel, '--channel'),
    name: manifest.name,
    sequence: int(values.sequence, '--sequence') ?? manifest.sequence,
    manifestId: sha256Hex(canonicalBytes(manifest)),
    manifestUrl: required(values['manifest-url'], '--manifest-url'),
    expires: new Date(Date.now() + parseDuration(values.expires ?? '7d', '--expires')).toISOString(),
  };
  const env = signEnvelope(body, keys);
  // Refuse to write a channel that our own verifier would reject (bad names, URL, ...).
  verifyChannel(serializeEnvelope(env), { keys: keys.map((k) => k.publicKey), threshold: keys.length });
  await writeFileAtomic(required(values.output, '-o'), serializeEnvelope(env));
  io.out(`channel ${body.channel} of ${body.name} → ${manifest.version} (sequence ${body.sequence}) → ${values.output}`);
  return EXIT.ok;
}

/** Checks local files against the manifest: size, whole hash and each chunk. */
async function verifyFiles(m: ManifestBody, specs: string[]): Promise<string[]> {
  const lines: string[] = [];
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    let entry = eq > 0 ? m.files.find((f) => f.path === spec.slice(0, eq)) : undefined;
    const local = eq > 0 ? spec.slice(eq + 1) : spec;
    if (eq <= 0) {
      const base = path.basename(local);
      const matches = m.files.filter((f) => f.path === local || f.path === base || f.path.endsWith(`/${base}`));
      if (matches.length > 1) throw new ShoalError('usage', `--file ${local} matches several manifest paths; use MANIFEST_PATH=${local}`);
      entry = matches[0];
    }
    if (!entry) throw new ShoalError('file-mismatch', `${local}: no such file in the manifest`);
    const d = await digestFile(local, entry.chunkSize);
    if (d.size !== entry.size) throw new ShoalError('file-mismatch', `${local}: ${d.size} bytes, manifest says ${entry.size}`);
    const bad = d.chunks.findIndex((c, i) => c !== entry.chunks[i]);
    if (bad >= 0) throw new ShoalError('file-mismatch', `${local}: chunk ${bad} (bytes ${bad * entry.chunkSize}…) differs from the manifest`);
    if (d.sha256 !== entry.sha256) throw new ShoalError('file-mismatch', `${local}: SHA-256 differs from the manifest`);
    lines.push(`  ${entry.path}: ok (${d.size} bytes, ${d.chunks.length} chunks)`);
  }
  return lines;
}

async function verifyVerb(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = args(argv, {
    trust: { type: 'string', multiple: true }, threshold: { type: 'string' }, 'last-sequence': { type: 'string' },
    file: { type: 'string', multiple: true }, manifest: { type: 'string' }, json: { type: 'boolean' },
  });
  if (values.help) return help(io, 'verify');
  const file = required(positionals[0], 'DOCUMENT');
  const keys = await Promise.all(required(values.trust, '--trust').map(loadPublicKey));
  const opts = { keys, threshold: int(values.threshold, '--threshold') ?? 1, lastSequence: int(values['last-sequence'], '--last-sequence') };
  const bytes = await readDoc(file);
  const kind = documentKind(bytes) ?? 'manifest';
  const lines: string[] = [];
  let v: Verified<unknown>;
  if (kind === 'channel') {
    const c = verifyChannel(bytes, opts);
    v = c;
    lines.push(`channel ${c.body.channel} of ${c.body.name}: sequence ${c.body.sequence}, manifest ${c.body.manifestId}`);
    if (values.manifest) {
      const m = verifyManifest(await readDoc(values.manifest), { keys, threshold: opts.threshold });
      if (m.id !== c.body.manifestId) throw new ShoalError('file-mismatch', `${values.manifest} has id ${m.id}, the channel names ${c.body.manifestId}`);
      lines.push(`  manifest ${values.manifest}: matches`);
    }
  } else {
    const m = verifyManifest(bytes, opts);
    v = m;
    lines.push(`manifest ${m.body.name} ${m.body.version} (sequence ${m.body.sequence}), ${m.body.files.length} file(s), expires ${m.body.expires}`);
    lines.push(...(await verifyFiles(m.body, values.file ?? [])));
  }
  if (values.json) io.out(JSON.stringify({ ok: true, kind, id: v.id, signedBy: v.signedBy, signed: v.body }));
  else {
    io.out(`OK ${file}: id ${v.id}, signed by ${v.signedBy.length} trusted key(s)`);
    lines.forEach((l) => io.out(l));
  }
  return EXIT.ok;
}

function help(io: Io, verb: string): number {
  io.out(PUBLISHER_HELP[verb]!);
  return EXIT.ok;
}

export const PUBLISHER_VERBS: Record<string, (argv: string[], io: Io) => Promise<number>> = {
  keygen,
  publish: publishVerb,
  sign: signVerb,
  channel: channelVerb,
  verify: verifyVerb,
};

function isHttpUrl(s: string): boolean {
  try {
    return /^https?:$/.test(new URL(s).protocol);
  } catch {
    return false;
  }
}
