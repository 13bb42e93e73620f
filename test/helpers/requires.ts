/** Tests that need a capability this machine may lack. */
import test, { type Implementation } from 'ava';
import { spawnSync } from 'node:child_process';

/**
 * `test` when the capability is there, else ava's skip with the reason in the
 * title (and once on the console), so a missing capability is visible in the
 * run instead of a test that passes without asserting.
 */
export function requires(missing: string | undefined, opts: { serial?: boolean } = {}) {
  const run = opts.serial ? test.serial : test;
  if (missing) console.log(`skipping tests: ${missing}`);
  return (title: string, impl: Implementation<[]>) => (missing ? run.skip(`${title} [skipped: ${missing}]`, impl) : run(title, impl));
}

/** Whether `cmd` is on the PATH. */
export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}
