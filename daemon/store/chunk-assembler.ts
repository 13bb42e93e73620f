import { copyInto } from './buffer-pool.js';
import type { Blob } from './blob.js';

/**
 * Cuts an in-order byte stream into a blob's chunks (the given run of chunk
 * indices) in one reused buffer, handing each full chunk to `onChunk` (which
 * verifies and stores it) before the buffer is filled again.
 */
export class ChunkAssembler {
  private idx = 0;
  private filled = 0;
  private buf: Buffer;

  constructor(private blob: Blob, private chunks: number[], private space: Buffer, private onChunk: (chunk: number, data: Buffer) => Promise<void>) {
    this.buf = space.subarray(0, chunks.length ? blob.chunkLength(chunks[0]!) : 0);
  }

  /** Byte offset in the blob of the next byte expected (where a resumed request starts). */
  get nextOffset(): number {
    return this.done ? Infinity : this.blob.chunkRange(this.chunks[this.idx]!).start + this.filled;
  }

  get done(): boolean {
    return this.idx >= this.chunks.length;
  }

  async push(b: Buffer): Promise<void> {
    let off = 0;
    while (off < b.length && !this.done) {
      const take = Math.min(b.length - off, this.buf.length - this.filled);
      copyInto(this.buf, b.subarray(off, off + take), this.filled);
      this.filled += take;
      off += take;
      if (this.filled === this.buf.length) {
        await this.onChunk(this.chunks[this.idx]!, this.buf);
        this.idx++;
        this.filled = 0;
        if (!this.done) this.buf = this.space.subarray(0, this.blob.chunkLength(this.chunks[this.idx]!));
      }
    }
    if (off < b.length) throw new Error('more bytes than the chunks hold');
  }

  /** The bytes of the chunk being filled were bad: forget them and expect that chunk again. */
  dropPartial() {
    this.filled = 0;
  }
}
