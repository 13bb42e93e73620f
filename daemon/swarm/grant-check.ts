/**
 * A coordinator is a peer like any other: its lease answer is checked
 * against the request before anything is done with it. Only a grant that
 * passes may become an origin range.
 */
import type { LeaseRequest, LeaseResponse } from '../peers/wire.js';

export type GrantCheck = { ok: true; granted: number[]; held: Map<number, string> } | { ok: false; reason: string };

/**
 * Valid: granted chunks are distinct, among those asked for (want or renew),
 * inside the blob, at most `max` new ones, and the new ones one ascending run
 * (for a `whole` request: ascending, gaps allowed);
 * `held` names only chunks asked for, and only known members.
 */
export function checkGrant(req: LeaseRequest, res: LeaseResponse, isMember: (id: string) => boolean): GrantCheck {
  const n = req.chunks;
  const want = new Set(req.want ?? []);
  const renew = new Set(req.renew ?? []);
  const seen = new Set<number>();
  const fresh: number[] = [];
  for (const c of res.granted) {
    if (!Number.isSafeInteger(c) || c < 0 || c >= n) return { ok: false, reason: `granted chunk ${c} is outside the blob (0..${n - 1})` };
    if (seen.has(c)) return { ok: false, reason: `granted chunk ${c} twice` };
    seen.add(c);
    if (renew.has(c)) continue;
    if (!want.has(c)) return { ok: false, reason: `granted chunk ${c}, which was not asked for` };
    fresh.push(c);
  }
  const max = Math.max(0, req.max ?? 8);
  if (fresh.length > max) return { ok: false, reason: `granted ${fresh.length} chunks, at most ${max} were asked for` };
  for (let k = 1; k < fresh.length; k++) {
    if (req.whole ? fresh[k]! <= fresh[k - 1]! : fresh[k] !== fresh[k - 1]! + 1) return { ok: false, reason: `the grant is not ${req.whole ? 'ascending' : 'one ascending run'}` };
  }
  const held = new Map<number, string>();
  for (const [k, v] of Object.entries(res.held)) {
    const c = Number(k);
    if (!/^\d{1,9}$/.test(k) || c >= n || !want.has(c)) return { ok: false, reason: `names a holder for chunk ${k}, which was not asked for` };
    if (typeof v !== 'string' || !isMember(v)) return { ok: false, reason: `names ${String(v).slice(0, 64)} as a holder, who is not a member` };
    if (seen.has(c)) return { ok: false, reason: `grants chunk ${c} and names another holder for it` };
    held.set(c, v);
  }
  return { ok: true, granted: fresh, held };
}
