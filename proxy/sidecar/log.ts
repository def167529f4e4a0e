/**
 * Structured JSON logs, one object per line on stdout. Fields are names, ids, versions, serials
 * and check codes only: no secret value, no PEM, no key material ever reaches a log call (the
 * leak test captures every line of a rotation and searches it for `PRIVATE KEY` and payloads).
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, string | number | boolean | undefined | null | readonly string[]>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * A JSON-lines logger.
 * @param write where lines go (default: `process.stdout`)
 * @param level the lowest level written (default `info`)
 */
export function jsonLogger(
  write: (line: string) => void = (line) => process.stdout.write(line),
  level: LogLevel = 'info',
  now: () => Date = () => new Date(),
): Logger {
  const emit = (at: LogLevel, message: string, fields: LogFields = {}) => {
    if (ORDER[at] < ORDER[level]) return;
    write(
      `${JSON.stringify({ time: now().toISOString(), level: at, component: 'sidecar', message, ...fields })}\n`,
    );
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
