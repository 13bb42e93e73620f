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

/**
 * Whether JSON text nests arrays and objects deeper than `max`, found by one
 * scan that skips strings: checked before parsing, so a hostile document
 * (say, a million open brackets) is refused before any recursive work on it.
 */
export function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) { if (++depth > max) return true; }
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** How deep any document shoal accepts may nest (manifests need 4). */
export const MAX_JSON_DEPTH = 32;
