import { createHash } from 'node:crypto';

/** Rendezvous (highest random weight) order of peers for a blob: every daemon computes the same list. */
export function hrwRank(blob: string, peerIds: Iterable<string>): string[] {
  const scored = [...peerIds].map((id) => ({ id, w: createHash('sha256').update(id).update('\0').update(blob).digest('hex') }));
  scored.sort((a, b) => (a.w < b.w ? 1 : a.w > b.w ? -1 : 0));
  return scored.map((s) => s.id);
}

export function coordinatorFor(blob: string, peerIds: Iterable<string>): string | undefined {
  return hrwRank(blob, peerIds)[0];
}
