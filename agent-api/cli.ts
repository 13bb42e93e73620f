/** `shoal`: the command line for people and update agents. Verbs dispatch to small modules. */
import { ShoalError } from '../daemon/errors.js';
import { EXIT, reportError, stdio, type Io } from '../manifests/cli-kit.js';
import { PUBLISHER_HELP, PUBLISHER_VERBS } from '../manifests/publisher-cli.js';
import { AGENT_HELP, AGENT_VERBS } from './agent-verbs.js';
import { OCI_HELP, OCI_VERBS } from './oci-verb.js';
import { SITE_HELP, SITE_VERBS } from './site-init.js';

type Verb = (argv: string[], io: Io) => Promise<number>;

const VERBS: Record<string, Verb> = { ...PUBLISHER_VERBS, ...AGENT_VERBS, ...OCI_VERBS, ...SITE_VERBS };
const HELP: Record<string, string> = { ...PUBLISHER_HELP, ...AGENT_HELP, ...OCI_HELP, ...SITE_HELP };

export function usage(): string {
  return [
    'usage: shoal VERB [options]   (shoal VERB --help for details)',
    '',
    ...Object.keys(VERBS).sort().map((v) => `  ${v.padEnd(9)} ${HELP[v]!.split('\n')[0]!.replace(/^shoal \S+\s*/, '')}`),
    '',
    'Exit codes: 0 ok, 1 error, 2 usage, 3 invalid document, 4 untrusted, 5 expired,',
    '6 rollback, 7 bytes differ, 8 bad key, 10 daemon unreachable, 11 fetch failed.',
  ].join('\n');
}

export async function runCli(argv: string[], io: Io = stdio): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === '--help' || verb === '-h' || verb === 'help') {
    io.out(usage());
    return verb ? EXIT.ok : EXIT.usage;
  }
  const fn = VERBS[verb];
  try {
    if (!fn) throw new ShoalError('usage', `unknown verb "${verb}" (try shoal --help)`);
    return await fn(rest, io);
  } catch (e) {
    if (rest.includes('--json') && e instanceof ShoalError) {
      io.out(JSON.stringify({ ok: false, error: { code: e.code, message: e.message, ...(e.path ? { path: e.path } : {}) } }));
    }
    return reportError(io, e);
  }
}

