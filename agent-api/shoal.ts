#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 node --expose-gc --liftoff-only
import { runCli } from './cli.js';

process.exitCode = await runCli(process.argv.slice(2));
