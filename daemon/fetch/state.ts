/**
 * Small durable daemon state in cacheDir: the highest accepted sequence per
 * artifact name and per channel (rollback guard). The peer id is the
 * identity key's (peers/identity.ts).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../manifests/atomic-file.js';

interface StateFile {
  sequences: Record<string, number>;
  channels: Record<string, number>;
}

export class DaemonState {
  private constructor(private file: string, private data: StateFile) {}

  static async open(dir: string): Promise<DaemonState> {
    const file = path.join(dir, 'state.json');
    let data: StateFile | undefined;
    try {
      const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<StateFile> | null;
      if (parsed && typeof parsed === 'object') data = { sequences: parsed.sequences ?? {}, channels: parsed.channels ?? {} };
    } catch {
      /* first start, or unreadable: start afresh */
    }
    const s = new DaemonState(file, data ?? { sequences: {}, channels: {} });
    if (!data) await s.save();
    return s;
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
