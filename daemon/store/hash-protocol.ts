/** Messages between the HashPool (hash-pool.ts) and its threads (hash-worker.ts). */
export type HashRequest =
  | { op: 'digest'; id: number; sab: SharedArrayBuffer; off: number; len: number }
  | { op: 'open'; sid: number; file: string }
  | { op: 'feed'; sid: number; id: number; pos: number; sab: SharedArrayBuffer; off: number; len: number }
  | { op: 'check'; sid: number; id: number; pos: number; sab: SharedArrayBuffer; off: number; len: number; expect: string }
  | { op: 'live'; sid: number; id: number; pos: number; sab: SharedArrayBuffer; off: number; len: number; expect: string; progress: SharedArrayBuffer }
  | { op: 'advance'; sid: number; upto: number }
  | { op: 'finish'; sid: number; id: number; size: number }
  | { op: 'close'; sid: number };

/** `fed`: for `check` and `live`, whether the stream took the bytes; `abandoned`: a live check whose download failed. */
export type HashReply = { id: number; digest?: string; fed?: boolean; abandoned?: boolean; error?: string };

/** Progress of a live check: the bytes present, or ABANDONED. */
export const ABANDONED = -1;
