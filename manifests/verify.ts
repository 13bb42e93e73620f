import { MAX_JSON_DEPTH, canonicalBytes, duplicateKey, nestsDeeperThan, sha256Hex } from './canonical.js';
import { ShoalError } from './errors.js';
import { verifyBytes, type PublicKey } from './keys.js';
import {
  DEFAULT_LIMITS,
  envelopeOf,
  validateChannelBody,
  validateManifestBody,
  type ChannelBody,
  type Envelope,
  type Limits,
  type ManifestBody,
  type Signature,
} from './schema.js';

export interface TrustPolicy {
  keys: PublicKey[];
  /** How many distinct trusted keys must have signed (k of n). */
  threshold: number;
}

export interface VerifyOptions extends TrustPolicy {
  /** Highest sequence accepted before for this name (manifests) or name+channel (channels); a function looks it up once the body is known. */
  lastSequence?: number | ((body: { name: string; channel?: string }) => number | undefined);
  now?: Date;
  limits?: Partial<Limits>;
}

export interface Verified<T> {
  body: T;
  /** SHA-256 of the canonical signed part. */
  id: string;
  signedBy: string[];
  envelope: Envelope<T>;
  /** Canonical signed bytes, for re-serving exactly what was verified. */
  canonical: Buffer;
}

function parse(input: Buffer | string, limits: Limits): unknown {
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.length;
  if (size > limits.maxBytes) throw new ShoalError('too-large', `document is ${size} bytes, more than the limit of ${limits.maxBytes}`);
  const text = typeof input === 'string' ? input : input.toString('utf8');
  if (nestsDeeperThan(text, MAX_JSON_DEPTH)) throw new ShoalError('malformed', `nested deeper than ${MAX_JSON_DEPTH} levels`, { path: '$' });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ShoalError('malformed', `not JSON: ${(e as Error).message}`, { path: '$' });
  }
  const dup = duplicateKey(text);
  if (dup) throw new ShoalError('malformed', `key given twice: ${dup}`, { path: dup });
  return value;
}

/** Counts distinct trusted keys whose signature over `bytes` is valid. */
export function checkSignatures(bytes: Buffer, sigs: Signature[], policy: TrustPolicy): string[] {
  if (!Number.isSafeInteger(policy.threshold) || policy.threshold < 1) {
    throw new ShoalError('bad-config', 'threshold must be at least 1');
  }
  const seen = new Set<string>();
  for (const s of sigs) {
    if (seen.has(s.keyid)) throw new ShoalError('duplicate-keyid', `key ${s.keyid.slice(0, 16)}… signed more than once`, { path: '$.signatures' });
    seen.add(s.keyid);
  }
  const trusted = new Map(policy.keys.map((k) => [k.keyid, k]));
  const good: string[] = [];
  let unknown = 0;
  for (const [i, s] of sigs.entries()) {
    const key = trusted.get(s.keyid);
    if (!key) { unknown++; continue; }
    // A trusted key's signature that fails is tampering, not noise: refuse outright.
    if (!verifyBytes(key, bytes, s.sig)) throw new ShoalError('bad-signature', `signature by key ${s.keyid.slice(0, 16)}… does not verify`, { path: `$.signatures[${i}]` });
    good.push(s.keyid);
  }
  if (good.length >= policy.threshold) return good;
  if (good.length === 0 && unknown > 0) throw new ShoalError('unknown-key', `signed only by keys that are not trusted (${unknown} signature(s))`, { path: '$.signatures' });
  throw new ShoalError('threshold-not-met', `${good.length} trusted signature(s), ${policy.threshold} required`, { path: '$.signatures' });
}

function checkFreshness(body: { expires: string; sequence: number; name: string; channel?: string }, opts: VerifyOptions, what: string) {
  const now = opts.now ?? new Date();
  if (Date.parse(body.expires) <= now.getTime()) throw new ShoalError('expired', `${what} expired at ${body.expires}`, { path: '$.signed.expires' });
  const last = typeof opts.lastSequence === 'function' ? opts.lastSequence(body) : opts.lastSequence;
  if (last !== undefined && body.sequence < last) {
    throw new ShoalError('rollback', `${what} sequence ${body.sequence} is older than the accepted ${last}`, { path: '$.signed.sequence' });
  }
}

function verifyDocument<T extends { expires: string; sequence: number; name: string }>(
  input: Buffer | string,
  opts: VerifyOptions,
  validate: (signed: unknown, limits: Limits) => T,
  what: string,
): Verified<T> {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const env = envelopeOf(parse(input, limits), limits);
  const body = validate(env.signed, limits);
  const canonical = canonicalBytes(env.signed);
  const signedBy = checkSignatures(canonical, env.signatures, opts);
  checkFreshness(body, opts, what);
  return { body, id: sha256Hex(canonical), signedBy, envelope: { signed: body, signatures: env.signatures }, canonical };
}

export function verifyManifest(input: Buffer | string, opts: VerifyOptions): Verified<ManifestBody> {
  return verifyDocument(input, opts, validateManifestBody, 'manifest');
}

export function verifyChannel(input: Buffer | string, opts: VerifyOptions): Verified<ChannelBody> {
  return verifyDocument(input, opts, (s) => validateChannelBody(s), 'channel');
}

/** Which kind of signed document this is, without trusting it. */
export function documentKind(input: Buffer | string): 'manifest' | 'channel' | undefined {
  try {
    const schema = (JSON.parse(input.toString()) as { signed?: { schema?: unknown } })?.signed?.schema;
    if (schema === 'shoal.manifest/v1') return 'manifest';
    if (schema === 'shoal.channel/v1') return 'channel';
  } catch {
    /* not JSON */
  }
  return undefined;
}
