/**
 * What the apt proxy vouches for: the .debs a verified Packages index names,
 * as path → {sha256, size}, packed compactly (Debian main amd64 is ~60,000
 * packages) so many indexes can be held at once. Built from readPackages.
 */
import type { Readable } from 'node:stream';
import { ShoalError } from '../errors.js';
import { readPackages } from './packages.js';

const RECORD = 40; // 32 bytes of SHA-256, 8 of size

export class DebIndex {
  private offsets = new Map<string, number>();
  private arena = Buffer.alloc(RECORD * 1024);
  private used = 0;

  get size(): number {
    return this.offsets.size;
  }

  /** Reads a (decompressed, verified) Packages stream into a new index; at most maxEntries. */
  static async from(packages: Readable, maxEntries = 500_000): Promise<DebIndex> {
    const ix = new DebIndex();
    for await (const e of readPackages(packages)) {
      if (ix.size >= maxEntries) throw new ShoalError('too-large', `Packages index names more than ${maxEntries} files`);
      ix.add(e.filename, e.sha256, e.size);
    }
    ix.arena = Buffer.from(ix.arena.subarray(0, ix.used)); // trimmed: the growth slack is given back
    return ix;
  }

  /** A path named twice keeps its first entry (apt uses the first stanza too). */
  add(filename: string, sha256: string, size: number) {
    if (this.offsets.has(filename)) return;
    if (this.used + RECORD > this.arena.length) {
      const bigger = Buffer.alloc(this.arena.length * 2);
      this.arena.copy(bigger, 0, 0, this.used);
      this.arena = bigger;
    }
    this.arena.write(sha256, this.used, 32, 'hex');
    this.arena.writeBigUInt64LE(BigInt(size), this.used + 32);
    this.offsets.set(filename, this.used);
    this.used += RECORD;
  }

  get(filename: string): { sha256: string; size: number } | undefined {
    const off = this.offsets.get(filename);
    if (off === undefined) return undefined;
    return { sha256: this.arena.toString('hex', off, off + 32), size: Number(this.arena.readBigUInt64LE(off + 32)) };
  }
}
