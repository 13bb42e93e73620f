/**
 * The agent API's requests and answers (docs/protocol.md): one module that
 * the admin server and the typed client (agent-api/client.ts) both import.
 */
import type { DownloadProgress, Stall } from '../swarm/downloader.js';
import type { SavingsTotals } from './savings.js';

export interface FetchStatus {
  id: string;
  state: 'resolving' | 'running' | 'done' | 'failed' | 'cancelled';
  /** native: a signed manifest; url: a plain URL with a known SHA-256. */
  kind: 'native' | 'url';
  /** kind url: the URL and the SHA-256 it was asked with. */
  url?: string;
  sha256?: string;
  manifestUrl?: string;
  channelUrl?: string;
  channel?: string;
  manifestId?: string;
  name?: string;
  version?: string;
  size: number;
  held: number;
  bytes: { origin: number; peer: number };
  files: Array<{ path: string; blob: string; size: number; chunks: number; held: number; state: string; type: 'file' | 'tar' }>;
  /** Set while the fetch could progress but waits for an origin window. */
  waiting?: 'origin-window';
  /** Nothing arrived for a while: why (the origin window, a failing origin, no source, …). */
  stalled?: Stall;
  error?: { code: string; message: string };
  createdAt: string;
  finishedAt?: string;
}

/** POST /api/v1/fetches: exactly one of manifestUrl, channelUrl, manifest, or url with sha256 (size optional). */
export interface CreateFetch {
  manifestUrl?: string;
  channelUrl?: string;
  manifest?: unknown;
  url?: string;
  sha256?: string;
  size?: number;
  ignoreOriginWindow?: boolean;
}

/** GET /api/v1/fetches/{id}/events: one server-sent event. */
export interface FetchEvent {
  event: 'progress' | 'done' | 'failed' | 'cancelled';
  data: FetchStatus & { peers: number };
}

export interface ArtifactView {
  name: string;
  version: string;
  sequence: number;
  manifestId: string;
  size: number;
  complete: boolean;
  pinned: boolean;
  files: Array<{ path: string; size: number; blob: string; type: 'file' | 'tar'; held: number; chunks: number; complete: boolean; pinned: boolean }>;
}

export interface PeerView {
  id: string;
  address: string;
  healthy: boolean;
  banned: boolean;
  banReason?: string;
  bannedUntil?: string;
  lastSeen: string | null;
  source: string;
}

/** GET /api/v1/status */
export interface StatusView {
  peerId: string;
  site: string;
  peerPort: number;
  /** How peer links are spoken: TLS 1.3 with the site's PSK, or plain HTTP (an open site). */
  link: 'tls-psk-v1' | 'plain';
  peers: { healthy: number; known: number };
  downloads: DownloadProgress[];
  /** usedBytes counts a blob still arriving at its full size: the budget reserves it. */
  cache: { usedBytes: number; maxBytes: number; blobs: number; partial: number };
  /** Chunks under an active origin lease, per blob this daemon coordinates. */
  leases: Record<string, number>;
  /** Bytes this daemon handed out in the last 24 h, by kind and by where they came from. */
  savings24h: SavingsTotals;
  memory: NodeJS.MemoryUsage;
}

/** GET /api/v1/stats?period=… */
export interface StatsView {
  since: string;
  self: { peerId: string; totals: SavingsTotals };
  peers: Array<{ peerId: string; totals?: SavingsTotals; error?: string }>;
  /** Every member that answered, this daemon included. */
  site: SavingsTotals;
}

export interface PinResult { ok: true; name: string; version: string; pinned: boolean }
export interface RemoveResult { ok: true; blobsRemoved: number; bytesFreed: number }
export interface GcResult { freedBytes: number; usedBytes: number; targetBytes: number; reached: boolean }
export interface ImportResult { artifacts: Array<{ name: string; version: string }>; blobs: number; bytes: number }

/** Every non-2xx answer. */
export interface ErrorBody { error: { code: string; message: string } }
