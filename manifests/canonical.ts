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

/**
 * The JSON path of the first object key that appears twice in one object of
 * valid JSON text, or undefined. JSON.parse keeps the last silently, so a
 * signed document could say one thing to us and another to a different parser.
 */
export function duplicateKey(text: string): string | undefined {
  const frames: Array<{ keys: Set<string> | undefined; expectKey: boolean; path: string }> = [];
  let pending = '$';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const top = frames[frames.length - 1];
    if (c === 0x22) {
      const start = i;
      for (i++; text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(text.slice(start, i + 1)) as string;
        if (top.keys.has(key)) return `${top.path}.${key}`;
        top.keys.add(key);
        pending = `${top.path}.${key}`;
      }
    } else if (c === 0x7b || c === 0x5b) {
      frames.push({ keys: c === 0x7b ? new Set() : undefined, expectKey: c === 0x7b, path: top?.keys ? pending : top ? `${top.path}[]` : '$' });
    } else if (c === 0x7d || c === 0x5d) frames.pop();
    else if (c === 0x2c && top?.keys) top.expectKey = true;
    else if (c === 0x3a && top?.keys) top.expectKey = false;
  }
  return undefined;
}

/** How deep any document shoal accepts may nest (manifests need 4). */
export const MAX_JSON_DEPTH = 32;
