import test from 'ava';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './helpers/fixtures.js';

test('the README main job (the demo site) runs to completion and uses the origin once', async (t) => {
  const out = await new Promise<{ code: number; stdout: string }>((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'dist/agent-api/demo.js')], { env: { ...process.env, SHOAL_DEMO_BYTES: String(16 << 20) }, timeout: 60_000 }, (err, stdout) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout }));
  });
  t.is(out.code, 0, out.stdout);
  t.regex(out.stdout, /3 verified copies of 16\.0 MiB/);
  t.regex(out.stdout, /origin served\s+16\.0 MiB \(1\.00 × the artifact/);
  t.regex(out.stdout, /32\.0 MiB from each other/);
});
