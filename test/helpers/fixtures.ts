/** Shared test fixtures: keys, signed documents, temp dirs, running the real CLI. */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chunkCount } from '../../manifests/chunker.js';
import { sha256Hex } from '../../manifests/canonical.js';
import { generateSigningKey, type SigningKey } from '../../manifests/keys.js';
import { CHANNEL_SCHEMA, MANIFEST_SCHEMA, type ChannelBody, type ManifestBody, type ManifestFile } from '../../manifests/schema.js';
import { serializeEnvelope, signEnvelope } from '../../manifests/sign.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI = path.join(ROOT, 'dist/agent-api/shoal.js');

export async function tmpDir(t: { teardown(fn: () => unknown): void }, prefix = 'shoal-test-'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

export function keys(n: number): SigningKey[] {
  return Array.from({ length: n }, () => generateSigningKey());
}

/** The manifest entry of an in-memory blob, hashed the simple way (a reference for the chunker). */
export function fileEntry(p: string, data: Buffer, chunkSize = 1 << 20, urls: string[] = []): ManifestFile {
  const chunks: string[] = [];
  for (let i = 0; i < chunkCount(data.length, chunkSize); i++) chunks.push(sha256Hex(data.subarray(i * chunkSize, (i + 1) * chunkSize)));
  return { path: p, size: data.length, sha256: sha256Hex(data), chunkSize, chunks, urls };
}

export function manifestBody(over: Partial<ManifestBody> = {}): ManifestBody {
  const now = Date.now();
  return {
    schema: MANIFEST_SCHEMA,
    name: 'app',
    version: '1.2.3',
    sequence: 7,
    created: new Date(now - 60e3).toISOString(),
    expires: new Date(now + 86400e3).toISOString(),
    files: [fileEntry('bin/app', randomBytes(3 << 19), 1 << 20, ['http://127.0.0.1:1/bin/app'])],
    ...over,
  };
}

export function channelBody(manifestId: string, over: Partial<ChannelBody> = {}): ChannelBody {
  return {
    schema: CHANNEL_SCHEMA,
    channel: 'stable',
    name: 'app',
    sequence: 7,
    manifestId,
    manifestUrl: 'http://127.0.0.1:1/m.json',
    expires: new Date(Date.now() + 86400e3).toISOString(),
    ...over,
  };
}

/** Signs any body (even an invalid one: that is the point of many tests) and serializes it. */
export function signed(body: unknown, by: SigningKey[]): string {
  return serializeEnvelope(signEnvelope(body, by));
}

export interface CliResult { code: number; stdout: string; stderr: string }

export function runShoal(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 60e3, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(file)) h.update(b as Buffer);
  return h.digest('hex');
}

/** A copy of `b` in shared memory, as the daemon's download buffers are (so the hash pool can check it in place). */
export function sharedCopy(b: Uint8Array): Buffer {
  const s = Buffer.from(new SharedArrayBuffer(b.length));
  s.set(b);
  return s;
}

