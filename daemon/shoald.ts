#!/usr/bin/env node
import { reportError, stdio } from '../manifests/cli-kit.js';
import { runDaemon } from './cli.js';

try {
  process.exitCode = await runDaemon(process.argv.slice(2), stdio);
} catch (e) {
  process.exitCode = reportError(stdio, e);
}
