/** `npm run bench -- NAME...`: runs the named benchmarks (all when none is named). */
import { benchPublish } from './publish.js';
import { benchFanout, benchMemory, benchSwarm, benchThroughput } from './site-bench.js';
import { benchSite } from './site-netns-bench.js';
import { benchApt } from './apt-bench.js';
import { benchOci } from './oci-bench.js';

const BENCHES: Record<string, () => Promise<void>> = {
  publish: benchPublish,
  swarm: benchSwarm,
  fanout: benchFanout,
  throughput: benchThroughput,
  memory: benchMemory,
  site: benchSite,
  apt: benchApt,
  oci: benchOci,
};

// Daemons run as installed (systemd/install.sh): without source maps, which cost memory.
process.env.SHOALD_SOURCE_MAPS ??= '0';
const names = process.argv.slice(2);
for (const n of names) if (!BENCHES[n]) { console.error(`unknown benchmark "${n}"; known: ${Object.keys(BENCHES).join(', ')}`); process.exit(2); }
for (const n of names.length ? names : Object.keys(BENCHES)) {
  await BENCHES[n]!();
}
