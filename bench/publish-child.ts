/** Runs one real publish in a fresh process and reports its time and peak RSS to the parent. */
import { promises as fs } from 'node:fs';
import { generateSigningKey } from '../manifests/keys.js';
import { publish } from '../manifests/publish.js';

const [file, keyDir] = process.argv.slice(2) as [string, string];
await fs.mkdir(keyDir, { recursive: true });
const t = performance.now();
const res = await publish({ inputs: [file], name: 'bench', version: '1', sequence: 1, keys: [generateSigningKey()], baseUrl: 'http://127.0.0.1/', expiresInMs: 86400e3 });
const ms = performance.now() - t;
process.send!({ ms, maxRssKiB: process.resourceUsage().maxRSS, chunks: res.envelope.signed.files[0]!.chunks.length });
