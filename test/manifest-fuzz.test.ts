/**
 * Property tests: random mutations of a valid signed manifest are never
 * accepted, and the verifier never throws anything but a typed ShoalError.
 * A mutation that leaves the signed content equal (e.g. whitespace) is allowed to pass.
 */
import test from 'ava';
import fc from 'fast-check';
import { canonicalBytes } from '../manifests/canonical.js';
import { ShoalError } from '../daemon/errors.js';

/** The codes a document verification may answer with. */
const VERIFY_CODES = ['bad-signature', 'unknown-key', 'threshold-not-met', 'duplicate-keyid', 'expired', 'rollback', 'malformed', 'too-large', 'unsupported-schema', 'inconsistent'];
import { verifyManifest } from '../manifests/verify.js';
import { keys, manifestBody, signed } from './helpers/fixtures.js';

const [K] = keys(1);
const trust = { keys: [K!.publicKey], threshold: 1 };
const body = manifestBody({ files: [manifestBody().files[0]!, { ...manifestBody().files[0]!, path: 'lib/x.so', type: 'file' }] });
const original = signed(body, [K!]);
const originalCanon = canonicalBytes(JSON.parse(original)).toString();

type Outcome = 'accepted' | 'same' | 'rejected';

function judge(text: string): Outcome {
  let sameContent = false;
  try {
    sameContent = canonicalBytes(JSON.parse(text)).toString() === originalCanon;
  } catch {
    /* not JSON: must be rejected */
  }
  try {
    verifyManifest(text, trust);
    return sameContent ? 'same' : 'accepted';
  } catch (e) {
    if (!(e instanceof ShoalError)) throw new Error(`untyped throw: ${(e as Error)?.stack ?? e}`);
    if (!(VERIFY_CODES as readonly string[]).includes(e.code)) throw new Error(`code outside the verify catalogue: ${e.code}`);
    return 'rejected';
  }
}

/** Every path into the JSON tree, so a mutation can hit any field at any depth. */
function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...prefix, i])));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  return out;
}
const allPaths = paths(JSON.parse(original)).filter((p) => p.length > 0);

function setAt(root: unknown, p: (string | number)[], value: unknown, mode: 'set' | 'delete' | 'add'): unknown {
  const copy = structuredClone(root) as Record<string | number, unknown>;
  let cur = copy;
  for (const k of p.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
  const last = p[p.length - 1]!;
  if (mode === 'delete') {
    if (Array.isArray(cur)) cur.splice(last as number, 1);
    else delete cur[last];
  } else if (mode === 'add' && cur && typeof cur === 'object' && !Array.isArray(cur)) {
    cur[`x${String(last)}`] = value;
  } else {
    cur[last] = value;
  }
  return copy;
}

test('structural mutations at any path are rejected with a typed error', (t) => {
  const parsed = JSON.parse(original);
  t.notThrows(() => fc.assert(
    fc.property(fc.constantFrom(...allPaths), fc.jsonValue({ maxDepth: 3 }), fc.constantFrom('set', 'delete', 'add' as const), (p, value, mode) => {
      const mutated = JSON.stringify(setAt(parsed, p, value, mode as 'set' | 'delete' | 'add'));
      return judge(mutated) !== 'accepted';
    }),
    { numRuns: 3000 },
  ));
});

test('byte-level mutations of the serialized manifest are rejected with a typed error', (t) => {
  const bytes = Buffer.from(original);
  t.notThrows(() => fc.assert(
    fc.property(
      fc.array(fc.record({ at: fc.nat(bytes.length - 1), op: fc.constantFrom('flip', 'delete', 'insert'), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 4 }),
      (edits) => {
        let b = Buffer.from(bytes);
        for (const e of edits) {
          const at = Math.min(e.at, Math.max(0, b.length - 1));
          if (e.op === 'flip') b[at] = e.byte;
          else if (e.op === 'delete') b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
          else b = Buffer.concat([b.subarray(0, at), Buffer.from([e.byte]), b.subarray(at)]);
        }
        return judge(b.toString('latin1')) !== 'accepted';
      },
    ),
    { numRuns: 3000 },
  ));
});

test('arbitrary JSON documents never verify and only throw typed errors', (t) => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
      const out = judge(JSON.stringify({ signed: v, signatures: JSON.parse(original).signatures }));
      return out !== 'accepted';
    }),
    { numRuns: 1000 },
  );
  t.is(judge(original), 'same');
});
