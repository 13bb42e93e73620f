// The multi-daemon tests that load every core of the test machine (16 daemons in
// namespaces, a 256 MiB site fetch, a 1,500-socket slowloris) or measure how a swarm
// shares its uploads (which another test's load skews): run one at a time,
// after the rest, so none measures another's load. `npm test` runs both passes.
export default {
  files: ['dist/test/site-netns.test.js', 'dist/test/site-swarm.test.js', 'dist/test/origin-quirks.test.js', 'dist/test/slowloris.test.js', 'dist/test/apt-netns.test.js', 'dist/test/oci-netns.test.js', 'dist/test/private-links-netns.test.js', 'dist/test/site-rotation.test.js'],
  workerThreads: false,
  concurrency: 1,
  timeout: '5m',
  nodeArguments: ['--enable-source-maps'],
};
