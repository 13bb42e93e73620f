/**
 * Small durable daemon state in cacheDir: the peer id (made once) and the
 * highest accepted sequence per artifact name and per channel (rollback guard).
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../manifests/atomic-file.js';

interface StateFile {
  peerId: string;
  sequences: Record<string, number>;
  channels: Record<string, number>;
}

export class DaemonState {
  private constructor(private file: string, private data: StateFile) {}

  static async open(dir: string): Promise<DaemonState> {
    const file = path.join(dir, 'state.json');
    let data: StateFile | undefined;
    try {
      const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<StateFile>;
      if (typeof parsed.peerId === 'string' && /^[A-Za-z0-9_-]{8,64}$/.test(parsed.peerId)) {
        data = { peerId: parsed.peerId, sequences: parsed.sequences ?? {}, channels: parsed.channels ?? {} };
      }
    } catch {
      /* first start, or unreadable: start afresh */
    }
    const s = new DaemonState(file, data ?? { peerId: randomBytes(12).toString('base64url'), sequences: {}, channels: {} });
    if (!data) await s.save();
    return s;
  }

  get peerId() {
    return this.data.peerId;
  }

  lastSequence(name: string): number | undefined {
    return this.data.sequences[name];
  }

  lastChannelSequence(name: string, channel: string): number | undefined {
    return this.data.channels[`${name}/${channel}`];
  }

  async accept(name: string, sequence: number, channel?: string) {
    const table = channel ? this.data.channels : this.data.sequences;
    const key = channel ? `${name}/${channel}` : name;
    if ((table[key] ?? -1) >= sequence) return;
    table[key] = sequence;
    await this.save();
  }

  private save() {
    return writeFileAtomic(this.file, JSON.stringify(this.data));
  }
}
