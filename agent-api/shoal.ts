#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 node --initial-old-space-size=64
import { runCli } from './cli.js';

process.exitCode = await runCli(process.argv.slice(2));
