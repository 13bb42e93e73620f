/** The error catalogue: each code once, with a status and an exit code, and documented. */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { allErrors, defineErrors, EXIT, ShoalError } from '../manifests/errors.js';
import '../daemon/errors.js';
import { ROOT } from './helpers/fixtures.js';

test('every code has an HTTP status and an exit code, and docs/formats.md lists it with both', async (t) => {
  const doc = await fs.readFile(path.join(ROOT, 'docs/formats.md'), 'utf8');
  const exits = new Set<number>(Object.values(EXIT));
  t.true(allErrors().size >= 30);
  for (const [code, spec] of allErrors()) {
    t.true(spec.http >= 400 && spec.http < 600, code);
    t.true(exits.has(spec.exit) && spec.exit !== 0, code);
    t.true(doc.includes(`| \`${code}\` | ${spec.http} | ${spec.exit} | ${spec.summary} |`), `${code} is documented`);
  }
});

test('a code cannot be defined twice; errors carry their status and exit code', (t) => {
  t.throws(() => defineErrors({ 'not-found': { summary: 'again', http: 404, exit: 1 } }), { message: /defined twice/ });
  const e = new ShoalError('daemon-unreachable');
  t.is(e.message, 'shoald cannot be reached', 'the summary when no detail is given');
  t.is(e.exit, EXIT.unreachable);
  t.is(new ShoalError('unavailable', 'no source').exit, EXIT.failed, 'only an unreachable daemon exits 10');
  t.is(new ShoalError('peer-stall', 'x').http, 504);
});
