import test from 'ava';
import { planChunks, type PickInput } from '../daemon/swarm/chunk-picker.js';

const N = 64;
const all = () => new Uint8Array(N).fill(1);
const some = (chunks: number[]) => { const b = new Uint8Array(N); for (const c of chunks) b[c] = 1; return b; };

/** A seeded generator, so that "random" plans are the same on every run. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

function plan(over: Partial<PickInput>) {
  return planChunks({ chunkCount: N, skip: () => false, have: new Map(), partial: new Set(), load: new Map(), concurrency: 4, random: lcg(7), ...over });
}

test('from complete holders only, chunks go in order and a lone holder takes the whole budget', (t) => {
  const p = plan({ have: new Map([['seed', all()]]) });
  t.deepEqual(p.fromPeers, [0, 1, 2, 3].map((chunk) => ({ chunk, peer: 'seed' })));
  t.deepEqual(p.unheld, []);
  // Held and in-flight chunks are skipped; chunks in flight count against the budget.
  const q = plan({ have: new Map([['seed', all()]]), skip: (i) => i < 2, load: new Map([['seed', 1]]) });
  t.deepEqual(q.fromPeers.map((f) => f.chunk), [2, 3, 4]);
});

test('rarest first: a chunk one peer holds comes before chunks two peers hold', (t) => {
  const p = plan({ have: new Map([['a', all()], ['b', some([40, 50])]]), partial: new Set(['b']) });
  // The rarest chunks come first, from a; a is then at half the budget, so the
  // chunks both hold come from b.
  t.deepEqual(p.fromPeers.slice(2).map((f) => [f.chunk, f.peer]).sort(), [[40, 'b'], [50, 'b']]);
  t.true(p.fromPeers.slice(0, 2).every((f) => f.peer === 'a' && f.chunk !== 40 && f.chunk !== 50));
  // Budget the other holder cannot use is not left idle.
  const q = plan({ have: new Map([['a', some([1, 2, 3, 4, 5, 6])], ['b', some([7])]]) });
  t.deepEqual(q.fromPeers.map((f) => [f.chunk, f.peer]), [[1, 'a'], [2, 'a'], [7, 'b'], [3, 'a']]);
});

test('several holders each get at most half the budget, least loaded first', (t) => {
  const p = plan({ have: new Map([['a', all()], ['b', all()]]) });
  t.deepEqual(p.fromPeers.map((f) => f.chunk), [0, 1, 2, 3], 'in order: nobody else is downloading');
  t.is(p.fromPeers.filter((f) => f.peer === 'a').length, 2);
  t.is(p.fromPeers.filter((f) => f.peer === 'b').length, 2);
  const q = plan({ have: new Map([['a', all()], ['b', all()]]), load: new Map([['a', 2]]) });
  t.deepEqual(q.fromPeers.map((f) => f.peer), ['b', 'b']);
});

test('while another peer is downloading too, ties break at random across the blob', (t) => {
  const runs = 200;
  let early = 0;
  const firstPicks = new Set<number>();
  const random = lcg(1);
  for (let k = 0; k < runs; k++) {
    const p = plan({ have: new Map([['seed', all()], ['other', new Uint8Array(N)]]), partial: new Set(['other']), random });
    t.is(p.fromPeers.length, 4);
    for (const f of p.fromPeers) if (f.chunk < 8) early++;
    firstPicks.add(p.fromPeers[0]!.chunk);
  }
  // In order, every pick would be among the first 4 chunks; spread evenly, 1 in 8 is.
  t.true(early / (runs * 4) < 0.25, `${early} of ${runs * 4} picks among the first 8 chunks`);
  t.true(firstPicks.size > N / 2, `first picks covered ${firstPicks.size} of ${N} chunks`);
});

test('chunks no usable peer holds are left for the origin', (t) => {
  const p = plan({ have: new Map([['a', some([0, 1])]]), skip: (i) => i === 5 });
  t.deepEqual(p.fromPeers.map((f) => f.chunk), [0, 1]);
  t.is(p.unheld.length, N - 3);
  t.false(p.unheld.includes(5));
});

test('a busy holder\'s chunks are neither asked of it nor left for the origin', (t) => {
  const have = new Map([['busy', new Uint8Array([1, 1, 1])], ['free', new Uint8Array([0, 0, 1])]]);
  const plan = planChunks({ chunkCount: 3, skip: () => false, have, partial: new Set(), load: new Map(), concurrency: 4, busy: new Set(['busy']) });
  t.deepEqual(plan.fromPeers, [{ chunk: 2, peer: 'free' }]);
  t.deepEqual(plan.unheld, [], 'chunks 0 and 1 wait for the busy holder');
});
