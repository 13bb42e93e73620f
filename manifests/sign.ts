import { canonicalBytes } from './canonical.js';
import { ShoalError } from './errors.js';
import { signBytes, type SigningKey } from './keys.js';
import type { Envelope } from './schema.js';

/** Signs the canonical bytes of `signed` with every key; keeps earlier signatures by other keys. */
export function signEnvelope<T>(signed: T, keys: SigningKey[], previous: Envelope<T>['signatures'] = []): Envelope<T> {
  if (keys.length === 0) throw new ShoalError('usage', 'at least one signing key is needed');
  const bytes = canonicalBytes(signed);
  const byId = new Map(previous.map((s) => [s.keyid, s]));
  for (const k of keys) byId.set(k.keyid, { keyid: k.keyid, sig: signBytes(k, bytes) });
  return { signed, signatures: [...byId.values()] };
}

/** The on-disk / on-wire form: pretty JSON is fine because signatures cover the canonical form. */
export function serializeEnvelope(env: Envelope<unknown>): string {
  return `${JSON.stringify(env, null, 2)}\n`;
}
