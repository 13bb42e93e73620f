/**
 * The optional native hasher (daemon/native/sha256-pair.c): a chunk's SHA-256
 * and the whole blob's running SHA-256 in one pass over the bytes. Undefined
 * when it is not built, the CPU lacks SHA extensions, or SHOAL_NATIVE=0; the
 * daemon then uses OpenSSL for both passes.
 */
import { createRequire } from 'node:module';

export interface Sha256Pair {
  /** Size of a context (a Uint8Array the caller owns). */
  contextBytes: number;
  init(ctx: Uint8Array): void;
  update(ctx: Uint8Array, data: Uint8Array): void;
  /** The digest so far; the context is unchanged. */
  digest(ctx: Uint8Array): Buffer;
  /** The digest of `data` on its own, while `ctx` also takes `data`. */
  pair(ctx: Uint8Array, data: Uint8Array): Buffer;
  /** Both contexts take `data`, in one pass when both stand at a 64-byte block boundary. */
  pairUpdate(a: Uint8Array, b: Uint8Array, data: Uint8Array): void;
}

function load(): Sha256Pair | undefined {
  if (process.env.SHOAL_NATIVE === '0') return undefined;
  try {
    const m = createRequire(import.meta.url)('../native/sha256-pair.node') as Sha256Pair & { available: boolean };
    return m.available ? m : undefined;
  } catch {
    return undefined; // not built here: OpenSSL does both passes
  }
}

export const sha256Pair: Sha256Pair | undefined = load();

/** What hashes chunk and whole-blob bytes in this process, for logs and status. */
export const hashingEngine = sha256Pair ? 'sha256-pair (x86 SHA extensions)' : 'openssl (two passes)';

/** A context in its own 8-byte aligned memory. */
export function newContext(p: Sha256Pair): Uint8Array {
  const ctx = new Uint8Array(new ArrayBuffer(p.contextBytes));
  p.init(ctx);
  return ctx;
}
