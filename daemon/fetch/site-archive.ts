/**
 * Export and import of a site cache for air-gapped sites. An archive is a tar:
 *   shoal-export.json           {format: "shoal.export/v1", artifacts: [{manifest, blobs}]}
 *   manifests/<id>.json         the signed manifests, byte for byte
 *   blobs/<sha256>              blob data
 * Import trusts nothing in it: every manifest is verified with the daemon's
 * trusted keys, every chunk against its signed hash and every blob as a whole,
 * and manifests are recorded only when all of it checked out. On any failure
 * the blobs the import created are removed: a tampered archive changes nothing.
 */
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { ShoalError, isShoalError } from '../errors.js';
import type { ManifestBody } from '../../manifests/schema.js';
import type { Verified } from '../../manifests/verify.js';
import type { FetchManager, StoredManifest } from './fetches.js';
import type { BlobStore } from '../store/blob-store.js';
import { ChunkAssembler } from '../store/chunk-assembler.js';

export const EXPORT_FORMAT = 'shoal.export/v1';
const INDEX = 'shoal-export.json';
const MAX_MANIFESTS = 1000;

export interface ExportIndex {
  format: typeof EXPORT_FORMAT;
  created: string;
  artifacts: Array<{ name: string; version: string; manifest: string; blobs: string[] }>;
}

export interface ExportPlan {
  items: Array<{ v: StoredManifest; bytes: Buffer }>;
  index: ExportIndex;
}

/** Checks every named artifact is completely cached; throws before anything is written. */
export async function planExport(fetches: FetchManager, store: BlobStore, refs: Array<{ name: string; version: string }>): Promise<ExportPlan> {
  if (!refs.length || refs.length > MAX_MANIFESTS) throw new ShoalError('bad-request', `name 1 to ${MAX_MANIFESTS} artifacts to export`);
  const items: Array<{ v: StoredManifest; bytes: Buffer }> = [];
  for (const r of refs) {
    const v = fetches.manifestByVersion(r.name, r.version);
    if (!v) throw new ShoalError('not-found', `no artifact ${r.name} ${r.version} in the cache`);
    for (const f of v.body.files) if (!store.get(f.sha256)?.complete) throw new ShoalError('not-found', `${f.path} of ${r.name} ${r.version} is not completely cached`);
    items.push({ v, bytes: (await fetches.manifestBytes(v.id))! });
  }
  const index: ExportIndex = {
    format: EXPORT_FORMAT, created: new Date().toISOString(),
    artifacts: items.map(({ v }) => ({ name: v.body.name, version: v.body.version, manifest: `manifests/${v.id}.json`, blobs: [...new Set(v.body.files.map((f) => f.sha256))] })),
  };
  return { items, index };
}

/** Streams a planned export into `out` as an archive, with backpressure. */
export async function writeExport({ items, index }: ExportPlan, store: BlobStore, out: Writable): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, out);
  done.catch(() => {});
  const add = (name: string, data: Buffer) => new Promise<void>((resolve, reject) => pack.entry({ name, mode: 0o644 }, data, (e) => (e ? reject(e) : resolve())));
  await add(INDEX, Buffer.from(JSON.stringify(index, null, 2)));
  for (const { v, bytes } of items) await add(`manifests/${v.id}.json`, bytes);
  const sent = new Set<string>();
  for (const { v } of items) {
    for (const f of v.body.files) {
      if (sent.has(f.sha256)) continue;
      sent.add(f.sha256);
      const blob = store.get(f.sha256)!;
      await new Promise<void>((resolve, reject) => {
        const entry = pack.entry({ name: `blobs/${f.sha256}`, size: f.size, mode: 0o644 }, (e) => (e ? reject(e) : resolve()));
        if (f.size === 0) return void entry.end(Buffer.alloc(0));
        pipeline(blob.openRead(0, f.size - 1), entry).catch(reject);
      });
    }
  }
  pack.finalize();
  await done;
}

export interface ImportResult {
  artifacts: Array<{ name: string; version: string }>;
  blobs: number;
  bytes: number;
}

/** Reads an archive, verifying everything; returns what was imported or throws having changed nothing. */
export async function importArchive(fetches: FetchManager, store: BlobStore, source: Readable): Promise<ImportResult> {
  const ex = tar.extract();
  const manifests = new Map<string, Verified<ManifestBody>>();
  const rawManifests = new Map<string, Buffer>();
  const created: string[] = [];
  let index: ExportIndex | undefined;
  let blobs = 0;
  let bytes = 0;
  const bad = (why: string) => new ShoalError('bad-request', `refused archive: ${why}`);
  const readAll = async (entry: AsyncIterable<unknown>, max: number) => {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const b of entry as AsyncIterable<Buffer>) {
      n += b.length;
      if (n > max) throw bad('an index or manifest entry is too large');
      parts.push(b);
    }
    return Buffer.concat(parts);
  };
  const work = (async () => {
    for await (const entry of ex) {
      const { name, type, size = 0 } = entry.header;
      if (type !== 'file') throw bad(`entry ${JSON.stringify(name)} is not a regular file`);
      if (!index) {
        if (name !== INDEX) throw bad(`the archive must start with ${INDEX}`);
        let parsed: ExportIndex;
        try {
          parsed = JSON.parse((await readAll(entry, 1 << 20)).toString('utf8')) as ExportIndex;
        } catch (e) {
          throw isShoalError(e) ? e : bad('the index is not JSON');
        }
        if (parsed?.format !== EXPORT_FORMAT || !Array.isArray(parsed.artifacts) || parsed.artifacts.length > MAX_MANIFESTS) throw bad(`not a ${EXPORT_FORMAT} archive`);
        index = parsed;
        continue;
      }
      const m = /^manifests\/([0-9a-f]{64})\.json$/.exec(name);
      const b = /^blobs\/([0-9a-f]{64})$/.exec(name);
      if (m) {
        if (manifests.size >= MAX_MANIFESTS) throw bad('too many manifests');
        const raw = await readAll(entry, 32 << 20);
        const v = fetches.verifyForImport(raw);
        if (v.id !== m[1]) throw bad(`manifest ${name} has id ${v.id}`);
        manifests.set(v.id, v);
        rawManifests.set(v.id, raw);
      } else if (b) {
        const sha = b[1]!;
        const file = [...manifests.values()].flatMap((v) => v.body.files).find((f) => f.sha256 === sha);
        if (!file) throw bad(`blob ${sha.slice(0, 12)} is not listed by any verified manifest before it`);
        if (size !== file.size) throw bad(`blob ${sha.slice(0, 12)} is ${size} bytes, the manifest says ${file.size}`);
        const existed = !!store.get(sha);
        const blob = await store.ensure({ sha256: file.sha256, size: file.size, chunkSize: file.chunkSize, chunks: file.chunks });
        if (!existed) created.push(sha);
        const release = store.hold(sha);
        try {
          // Chunk by chunk: each is hashed against the signed manifest before it is written.
          const assembler = new ChunkAssembler(blob, Array.from({ length: blob.chunkCount }, (_, i) => i), Buffer.allocUnsafe(blob.chunkSize), async (i, data) => {
            await blob.writeChunk(i, data);
          });
          for await (const part of entry as AsyncIterable<Buffer>) await assembler.push(part);
          if (!assembler.done) throw bad(`blob ${sha.slice(0, 12)} ends early`);
          await blob.whenComplete();
        } finally {
          release();
        }
        blobs++;
        bytes += file.size;
      } else {
        throw bad(`unexpected entry ${JSON.stringify(name)}`);
      }
    }
  })();
  try {
    await Promise.all([pipeline(source, ex), work]);
    if (!index) throw bad('empty archive');
    for (const a of index.artifacts) {
      const id = /^manifests\/([0-9a-f]{64})\.json$/.exec(a.manifest)?.[1];
      const v = id ? manifests.get(id) : undefined;
      if (!v) throw bad(`the manifest of ${a.name} ${a.version} is missing`);
      for (const f of v.body.files) if (!store.get(f.sha256)?.complete) throw bad(`${f.path} of ${a.name} ${a.version} is missing from the archive`);
    }
  } catch (e) {
    ex.destroy();
    for (const sha of created) await store.remove(sha).catch(() => {});
    if (isShoalError(e)) throw e;
    throw bad((e as Error).message);
  }
  // Everything verified: now the manifests are recorded, so agents and peers can use them.
  for (const [id, v] of manifests) await fetches.recordManifest(v, rawManifests.get(id)!);
  return { artifacts: [...manifests.values()].map((v) => ({ name: v.body.name, version: v.body.version })), blobs, bytes };
}
