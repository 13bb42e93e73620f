/** `shoald [--config FILE] [--cache-dir DIR ...]` and `shoal daemon ...`: run a daemon until a signal. */
import { args, EXIT, reportError, type Io } from '../manifests/cli-kit.js';
import { configFlags, flagsToConfig, loadConfig } from './config/config.js';
import { startDaemon } from './main.js';

export const DAEMON_HELP = `shoal daemon [--config FILE] [--KEY VALUE ...]
  Run shoald in the foreground. Settings: defaults ← JSON config file ← SHOAL_* environment
  ← flags (--cache-dir, --peer-listen, --admin-listen, --static-peers a:1,b:2, ...; see docs/config.md).`;

export async function runDaemon(argv: string[], io: Io): Promise<number> {
  const { values } = args(argv, { config: { type: 'string', short: 'c' }, ...configFlags() }, false);
  if (values.help) { io.out(DAEMON_HELP); return EXIT.ok; }
  const sources = { file: values.config as string | undefined, flags: flagsToConfig(values) };
  const config = await loadConfig(sources);
  const daemon = await startDaemon(config);
  // SIGHUP re-reads the same sources; a bad new config is reported and the old one kept.
  const onHup = () => {
    loadConfig(sources).then((next) => daemon.reload(next)).catch((e) => reportError(io, e));
  };
  process.on('SIGHUP', onHup);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      process.off('SIGHUP', onHup);
      daemon.stop().then(resolve, (e) => { reportError(io, e); resolve(); });
      void sig;
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
  return EXIT.ok;
}
