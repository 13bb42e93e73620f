#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 node --expose-gc --liftoff-only
import { reportError, stdio } from '../manifests/cli-kit.js';
import { runDaemon } from './daemon-cli.js';

try {
  process.exitCode = await runDaemon(process.argv.slice(2), stdio);
} catch (e) {
  process.exitCode = reportError(stdio, e);
}
