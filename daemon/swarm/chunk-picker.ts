/**
 * Which chunk to fetch from which peer next: rarest first, spread over holders
 * by load. A pure function of what the downloader knows, so that the policy
 * can be tested on its own.
 */

export interface PickInput {
  chunkCount: number;
  /** Chunks not to plan: held, or in flight already. */
  skip(chunk: number): boolean;
  /** Have-maps of the usable peers (1 = holds the chunk), by peer id. */
  have: ReadonlyMap<string, Uint8Array>;
  /** Usable peers that hold only part of the blob: other downloaders. */
  partial: ReadonlySet<string>;
  /** Chunks in flight from each peer, by peer id. */
  load: ReadonlyMap<string, number>;
  /** Holders that said they are at their upload limit: their chunks count as held, but they are not asked now. */
  busy?: ReadonlySet<string>;
  /** Most chunks in flight from peers at once. */
  concurrency: number;
  random?: () => number;
}

export interface ChunkPlan {
  /** Fetches to start now, in order of preference. */
  fromPeers: Array<{ chunk: number; peer: string }>;
  /** Wanted chunks no usable peer holds: the origin's (through leases). */
  unheld: number[];
}

export function planChunks(input: PickInput): ChunkPlan {
  const random = input.random ?? Math.random;
  // Random tie-break spreads what concurrent downloaders pick, so that they hold
  // different chunks and trade them instead of all pulling the same ones from one
  // holder. With no other downloader there is nothing to spread against: chunks go
  // in order, which reads the holder's file sequentially.
  const spread = input.partial.size > 0;
  const wanted: Array<{ chunk: number; holders: string[]; r: number }> = [];
  const unheld: number[] = [];
  for (let i = 0; i < input.chunkCount; i++) {
    if (input.skip(i)) continue;
    const holders: string[] = [];
    for (const [id, bits] of input.have) if (bits[i]) holders.push(id);
    if (!holders.length) { unheld.push(i); continue; }
    wanted.push({ chunk: i, holders, r: spread ? random() : i });
  }
  wanted.sort((a, b) => a.holders.length - b.holders.length || a.r - b.r);

  // Each holder takes at most half the budget at first: the rarest chunks come from the
  // one holder that has them while the rest trades with the others. Budget nobody else
  // can use then goes to whoever can (a lone holder takes it all; its server bounds its
  // own load).
  const c = input.concurrency;
  const load = new Map(input.load);
  let inflight = 0;
  for (const v of load.values()) inflight += v;
  const fromPeers: ChunkPlan['fromPeers'] = [];
  const taken = new Set<number>();
  for (const perPeerMax of [Math.ceil(c / 2), c]) {
    for (const { chunk, holders } of wanted) {
      if (inflight >= c) break;
      if (taken.has(chunk)) continue;
      const free = holders.filter((id) => (load.get(id) ?? 0) < perPeerMax && !input.busy?.has(id));
      if (!free.length) continue;
      const least = Math.min(...free.map((id) => load.get(id) ?? 0));
      const pick = free.filter((id) => (load.get(id) ?? 0) === least);
      const peer = pick[Math.floor(random() * pick.length)]!;
      fromPeers.push({ chunk, peer });
      taken.add(chunk);
      load.set(peer, (load.get(peer) ?? 0) + 1);
      inflight++;
    }
  }
  return { fromPeers, unheld };
}
