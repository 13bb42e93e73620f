/**
 * The peer protocol on the wire (docs/protocol.md): paths, bodies and their
 * checks, in one module that the client (peer-client.ts) and the server
 * (peer-server.ts) both import. Whatever a peer sends is untrusted; the
 * parse functions here are the only way a body becomes one of these types.
 */
export const PROTOCOL_VERSION = 1;
export const SOFTWARE = 'shoal/0.1.0';
export const CAPABILITIES = ['range', 'have-wait', 'leases'] as const;

export const PEER_ID_RE = /^[A-Za-z0-9_-]{8,64}$/;
export const HEX64 = /^[0-9a-f]{64}$/;
/** Largest JSON body either side reads. */
export const MAX_JSON_BYTES = 1 << 20;
/** Most chunk indices in one list of a lease request. */
export const MAX_LEASE_LIST = 4096;
/** Most chunks of a blob the protocol handles. */
export const MAX_CHUNKS = 1 << 20;

export const paths = {
  info: (challenge: string) => `/v1/info?challenge=${challenge}`,
  manifest: (id: string) => `/v1/manifests/${id}`,
  have: (blob: string, wait?: number) => `/v1/have/${blob}${wait !== undefined ? `?wait=${wait}` : ''}`,
  blob: (blob: string) => `/v1/blobs/${blob}`,
  leases: '/v1/leases',
  stats: (sinceMs: number) => `/v1/stats?since=${sinceMs}`,
} as const;

/** GET /v1/info */
export interface PeerInfo {
  /** Derived from publicKey (peers/identity.ts): an id cannot be chosen, only a key generated. */
  peerId: string;
  site: string;
  software: string;
  protocol: number;
  capabilities: string[];
  /** `ed25519:…` */
  publicKey?: string;
  /** Signature over the asker's challenge: the answerer holds the key. */
  proof?: string;
}

export const CHALLENGE_RE = /^[A-Za-z0-9_-]{16,64}$/;

/** GET /v1/have/{blob}: the JSON body. */
export interface HaveBody {
  blob: string;
  seq: number;
  chunks: number;
  complete: boolean;
  /** base64, one bit per chunk, most significant bit first. */
  bitmap: string;
  /** Chunks this member is fetching from the origin now under a lease, same encoding; absent when none. */
  leasing?: string;
}

/** A have-map as the client returns it. */
export interface HaveMap {
  seq: number;
  chunks: number;
  complete: boolean;
  bitmap: Buffer;
  leasing?: Buffer;
}

/** POST /v1/leases */
export interface LeaseRequest {
  blob: string;
  peer: string;
  /** Chunk count of the blob: the coordinator may not hold the blob itself. */
  chunks: number;
  want?: number[];
  max?: number;
  renew?: number[];
  release?: number[];
  done?: number[];
  /**
   * The origin ignores Range, so the requester reads the body once, whole: grant
   * every free wanted chunk (ascending, gaps allowed), up to max.
   */
  whole?: boolean;
}

export interface LeaseResponse {
  coordinator: string;
  granted: number[];
  /** chunk → peer id holding its lease (or having fetched it). */
  held: Record<string, string>;
  retryMs?: number;
}

/** The error body of every non-2xx JSON answer. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** Have-map bit encoding: one bit per chunk, most significant bit of byte 0 = chunk 0. */
export function packBits(n: number, on: (i: number) => boolean): Buffer {
  const out = Buffer.alloc(Math.ceil(n / 8));
  for (let i = 0; i < n; i++) if (on(i)) out[i >> 3]! |= 0x80 >> (i & 7);
  return out;
}

/** The inverse of packBits: one byte (0 or 1) per chunk. */
export function unpackBits(bitmap: Buffer, n: number): Uint8Array {
  const bits = new Uint8Array(n);
  for (let i = 0; i < n; i++) bits[i] = (bitmap[i >> 3]! >> (7 - (i & 7))) & 1;
  return bits;
}

export function parseInfo(v: unknown): PeerInfo | undefined {
  const d = v as Partial<PeerInfo> | null;
  if (!d || typeof d !== 'object' || typeof d.peerId !== 'string' || !PEER_ID_RE.test(d.peerId) || typeof d.site !== 'string') return undefined;
  return {
    peerId: d.peerId, site: d.site, software: String(d.software), protocol: Number(d.protocol), capabilities: Array.isArray(d.capabilities) ? d.capabilities.map(String) : [],
    ...(typeof d.publicKey === 'string' ? { publicKey: d.publicKey } : {}), ...(typeof d.proof === 'string' ? { proof: d.proof } : {}),
  };
}

export function parseHave(v: unknown, chunks: number): HaveMap | undefined {
  const d = v as Partial<HaveBody> | null;
  if (!d || typeof d !== 'object' || !Number.isSafeInteger(d.seq) || d.chunks !== chunks || typeof d.bitmap !== 'string') return undefined;
  const bitmap = Buffer.from(d.bitmap, 'base64');
  if (bitmap.length !== Math.ceil(chunks / 8)) return undefined;
  if (d.leasing !== undefined && typeof d.leasing !== 'string') return undefined;
  const leasing = d.leasing === undefined ? undefined : Buffer.from(d.leasing, 'base64');
  if (leasing && leasing.length !== bitmap.length) return undefined;
  return { seq: d.seq!, chunks, complete: !!d.complete, bitmap, ...(leasing ? { leasing } : {}) };
}

const indexList = (v: unknown) => v === undefined || (Array.isArray(v) && v.length <= MAX_LEASE_LIST && v.every((x) => Number.isSafeInteger(x) && x >= 0));

export function parseLeaseRequest(v: unknown): LeaseRequest | undefined {
  const b = v as Partial<LeaseRequest> | null;
  if (!b || typeof b !== 'object' || typeof b.blob !== 'string' || !HEX64.test(b.blob)
    || typeof b.peer !== 'string' || !PEER_ID_RE.test(b.peer)
    || !Number.isSafeInteger(b.chunks) || b.chunks! < 1 || b.chunks! > MAX_CHUNKS
    || !indexList(b.want) || !indexList(b.renew) || !indexList(b.release) || !indexList(b.done)
    || (b.max !== undefined && (!Number.isSafeInteger(b.max) || b.max < 0))
    || (b.whole !== undefined && typeof b.whole !== 'boolean')) return undefined;
  return b as LeaseRequest;
}

export function parseLeaseResponse(v: unknown): LeaseResponse | undefined {
  const d = v as Partial<LeaseResponse> | null;
  if (!d || typeof d !== 'object' || !Array.isArray(d.granted) || typeof d.held !== 'object' || d.held === null) return undefined;
  return {
    coordinator: String(d.coordinator), granted: d.granted.filter((x) => Number.isSafeInteger(x)), held: d.held,
    ...(typeof d.retryMs === 'number' ? { retryMs: Math.min(5000, Math.max(50, d.retryMs)) } : {}),
  };
}
