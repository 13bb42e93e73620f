import canonicalizeModule from 'canonicalize';
import { createHash } from 'node:crypto';

// The package is CommonJS (`module.exports = fn`); its typings describe an ES default.
const canonicalize = canonicalizeModule as unknown as (v: unknown) => string | undefined;

/** RFC 8785 (JCS) canonical bytes of a JSON value: what is signed and hashed. */
export function canonicalBytes(value: unknown): Buffer {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no JSON form');
  return Buffer.from(text, 'utf8');
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}
