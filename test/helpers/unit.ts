/** `systemd-analyze verify` of an installed unit: verify checks that ExecStart exists, so a
 * copy points it at the wrapper installed under `root` (a DESTDIR or a dpkg --root). */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';

export async function verifyUnit(unitFile: string, root: string): Promise<{ status: number | null; stderr: string }> {
  const unit = (await fs.readFile(unitFile, 'utf8')).replace('ExecStart=/usr/bin/shoald', `ExecStart=${root}/usr/bin/shoald`);
  const copy = path.join(root, 'shoal.service');
  await fs.writeFile(copy, unit);
  try {
    return spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8' });
  } finally {
    await fs.rm(copy, { force: true });
  }
}
