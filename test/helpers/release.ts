/** Publishes a real release into a test origin's folder: artifact bytes + signed manifest. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { makeFile } from '../../bench/lib.js';
import { generateSigningKey, type SigningKey } from '../../manifests/keys.js';
import { publish } from '../../manifests/publish.js';
import { serializeEnvelope } from '../../manifests/sign.js';
import { LocalOrigin } from '../../agent-api/local-origin.js';

export interface Release {
  key: SigningKey;
  trusted: string[];
  file: string;
  rel: string;
  manifestUrl: string;
  manifestPath: string;
  size: number;
  sha256: string;
  chunkSize: number;
}

/** `marker`: written into the artifact every 256 KiB (for tests that look for it on the wire). */
export async function makeRelease(originRoot: string, originUrl: string, o: { size: number; name?: string; version?: string; sequence?: number; chunkSize?: number; key?: SigningKey; marker?: string }): Promise<Release> {
  const key = o.key ?? generateSigningKey();
  const name = o.name ?? 'app';
  const version = o.version ?? '1.0.0';
  const rel = `${name}-${version}.bin`;
  const file = path.join(originRoot, rel);
  await fs.mkdir(originRoot, { recursive: true });
  await makeFile(file, o.size);
  if (o.marker) {
    const fh = await fs.open(file, 'r+');
    try {
      for (let at = 0; at + o.marker.length <= o.size; at += 256 * 1024) await fh.write(Buffer.from(o.marker), 0, o.marker.length, at);
    } finally {
      await fh.close();
    }
  }
  const chunkSize = o.chunkSize ?? 1 << 20;
  const res = await publish({ inputs: [file], name, version, sequence: o.sequence ?? 1, keys: [key], baseUrl: `${originUrl}/`, expiresInMs: 86400e3, chunkSize });
  const manifestPath = path.join(originRoot, `${name}-${version}.json`);
  await fs.writeFile(manifestPath, serializeEnvelope(res.envelope));
  return {
    key, trusted: [key.publicKey.text], file, rel, manifestUrl: `${originUrl}/${name}-${version}.json`, manifestPath,
    size: o.size, sha256: res.envelope.signed.files[0]!.sha256, chunkSize,
  };
}

/** A local origin serving a fresh signed release, stopped at teardown. */
export async function originWithRelease(t: { teardown(fn: () => unknown): void }, dir: string, o: { size: number; bytesPerSec?: number; chunkSize?: number; host?: string; marker?: string }) {
  const origin = new LocalOrigin(path.join(dir, 'origin'), { bytesPerSec: o.bytesPerSec });
  const url = await origin.start(o.host);
  t.teardown(() => origin.stop());
  const rel = await makeRelease(path.join(dir, 'origin'), url, { size: o.size, ...(o.chunkSize ? { chunkSize: o.chunkSize } : {}), ...(o.marker ? { marker: o.marker } : {}) });
  return { origin, url, rel };
}
