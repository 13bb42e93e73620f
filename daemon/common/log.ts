/** Structured logs: one JSON object per line on stdout (journald keeps them). */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  (level: Level, msg: string, fields?: Record<string, unknown>): void;
  level: Level;
  /** Lifecycle events (ready, stopped) that tools and supervisors watch for: printed at any level. */
  notice(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(level: Level, write: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  const log = ((lvl: Level, msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[lvl] < ORDER[log.level]) return;
    write(`${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields })}\n`);
  }) as Logger;
  log.level = level;
  log.notice = (msg, fields = {}) => write(`${JSON.stringify({ time: new Date().toISOString(), level: 'notice', msg, ...fields })}\n`);
  return log;
}
