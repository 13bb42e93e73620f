/**
 * Chunk writes that bypass the page cache (O_DIRECT).
 *
 * A daemon downloading a blob alone writes each byte once, and nobody reads
 * it back soon. Through the page cache that write costs a CPU copy per byte and
 * a fresh page per 4 KiB. On VMs that return free memory to the host
 * (virtio-balloon free-page reporting, as on the development VM), a fresh
 * page can also cost a fault on the host: 2.4 s of kernel time per GiB
 * instead of 0.2 s. The daemon's chunk buffers are few and reused, so O_DIRECT
 * writes from them neither copy nor allocate. A multi-GiB download also
 * leaves the machine's page cache as it found it.
 *
 * O_DIRECT needs the buffer's address, the file offset and the length to be
 * multiples of the device's block size. DIRECT_ALIGN (4096) covers the usual
 * 512 and 4096. Node aligns buffer memory to 16 bytes only, and JavaScript
 * cannot see addresses. So the pool over-allocates by DIRECT_ALIGN and the
 * buffer-address addon tells where the first aligned byte is.
 *
 * Writes go through the page cache, as before, when:
 * - other peers are downloading the same blob: they will ask for these chunks
 *   within seconds, and serving them from memory beat reading them back from
 *   disk (swarm benchmark: 1.16 against 1.22 × the ideal time);
 * - the addon is not built;
 * - the platform has no O_DIRECT;
 * - the file system refuses it (EINVAL);
 * - a piece is not aligned (a blob's short last chunk).
 */
import { constants, promises as fs } from 'node:fs';
import { createRequire } from 'node:module';

export const DIRECT_ALIGN = 4096;

interface BufferAddress {
  alignmentOffset(view: Uint8Array, alignment: number): number;
}

function load(): BufferAddress | undefined {
  if (process.env.SHOAL_NATIVE === '0' || !constants.O_DIRECT) return undefined;
  try {
    return createRequire(import.meta.url)('../native/buffer-address.node') as BufferAddress;
  } catch {
    return undefined; // not built here: every write goes through the page cache
  }
}

const address = load();

/** Whether this process can write chunks with O_DIRECT at all. */
export const directIoAvailable = !!address;

/** `size` bytes of shared memory, starting at a DIRECT_ALIGN boundary when the addon is there to find one. */
export function alignedSharedBuffer(size: number): Buffer {
  if (!address) return Buffer.from(new SharedArrayBuffer(size));
  const sab = new SharedArrayBuffer(size + DIRECT_ALIGN);
  return Buffer.from(sab, address.alignmentOffset(new Uint8Array(sab), DIRECT_ALIGN), size);
}

/** Whether `data`, written at file offset `pos`, meets O_DIRECT's alignment rules. */
export function directWritable(data: Uint8Array, pos: number): boolean {
  return !!address && data.length > 0 && pos % DIRECT_ALIGN === 0 && data.length % DIRECT_ALIGN === 0 && address.alignmentOffset(data, DIRECT_ALIGN) === 0;
}

/** `file` opened for O_DIRECT writes; undefined when this process or the file system cannot. */
export async function openDirect(file: string): Promise<fs.FileHandle | undefined> {
  if (!address) return undefined;
  try {
    return await fs.open(file, constants.O_WRONLY | constants.O_DIRECT);
  } catch {
    return undefined;
  }
}

/** Chunk bytes written since start, by path to the disk: for metrics and tests. */
export const writtenBytes = { direct: 0, cached: 0 };
