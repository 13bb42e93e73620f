/** Messages between the HashPool (hash-pool.ts) and its threads (hash-worker.ts). */
export type HashRequest =
  /** The SHA-256 of bytes in shared memory (a chunk just received). */
  | { op: 'digest'; id: number; sab: SharedArrayBuffer; off: number; len: number }
  /** The SHA-256 of bytes [pos, pos+len) of a file (a stored chunk, re-checked). */
  | { op: 'file'; id: number; file: string; pos: number; len: number };

export type HashReply = { id: number; digest?: string; error?: string };
