import { copyInto } from './buffer-pool.js';
import type { Blob } from './blob.js';

/**
 * Cuts an in-order byte stream into a blob's chunks (the given ascending
 * chunk indices) in one reused buffer, handing each full chunk to `onChunk`
 * (which verifies and stores it) before the buffer is filled again. Bytes of
 * chunks between those (a body read whole) are passed over, and so is a chunk
 * for which `skip` says so when its first byte arrives.
 */
export class ChunkAssembler {
  private idx = 0;
  private filled = 0;
  private buf: Buffer;
  /** Blob offset of the next byte pushed. */
  private pos = 0;

  constructor(private blob: Pick<Blob, 'chunkLength' | 'chunkRange'>, private chunks: number[], private space: Buffer, private onChunk: (chunk: number, data: Buffer) => Promise<void>, private skip?: (chunk: number) => boolean) {
    this.buf = space.subarray(0, chunks.length ? blob.chunkLength(chunks[0]!) : 0);
    this.pos = this.nextOffset;
  }

  /** Byte offset in the blob of the next byte expected (where a resumed request starts). */
  get nextOffset(): number {
    return this.done ? Infinity : this.blob.chunkRange(this.chunks[this.idx]!).start + this.filled;
  }

  /** A new request starts: the bytes pushed next begin at nextOffset, which is returned. */
  restart(): number {
    this.pos = this.nextOffset;
    return this.pos;
  }

  get done(): boolean {
    return this.idx >= this.chunks.length;
  }

  async push(b: Buffer): Promise<void> {
    let off = 0;
    while (off < b.length && !this.done) {
      const gap = this.nextOffset - this.pos;
      if (gap > 0) {
        const s = Math.min(gap, b.length - off);
        off += s;
        this.pos += s;
        continue;
      }
      if (this.filled === 0 && this.skip?.(this.chunks[this.idx]!)) {
        this.next();
        continue;
      }
      const take = Math.min(b.length - off, this.buf.length - this.filled);
      copyInto(this.buf, b.subarray(off, off + take), this.filled);
      this.filled += take;
      off += take;
      this.pos += take;
      if (this.filled === this.buf.length) {
        await this.onChunk(this.chunks[this.idx]!, this.buf);
        this.next();
      }
    }
    // Bytes past the last chunk (skipped since the request began) are not wanted: dropped.
  }

  private next() {
    this.idx++;
    this.filled = 0;
    if (!this.done) this.buf = this.space.subarray(0, this.blob.chunkLength(this.chunks[this.idx]!));
  }

  /** The bytes of the chunk being filled were bad: forget them and expect that chunk again. */
  dropPartial() {
    this.filled = 0;
  }
}
