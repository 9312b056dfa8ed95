/**
 * Structured logging: one line per event, text (`key=value`) or JSON.
 * Child loggers carry fixed fields (service, connection id).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export type LogFields = Record<string, string | number | boolean | undefined | null>;

export interface LogSink {
  write(line: string): unknown;
}

export interface LoggerOptions {
  level?: LogLevel;
  json?: boolean;
  /** Where lines go (default: standard error). */
  sink?: LogSink;
  /** Fixed fields on every line. */
  fields?: LogFields;
}

const NEEDS_QUOTES = /[\s"=]/;

let stderrGuarded = false;
/** A closed stderr (a reader that went away) must not crash a proxy that only logs to it. */
function guardStderr(): void {
  if (stderrGuarded) return;
  stderrGuarded = true;
  process.stderr.on('error', () => {});
}

function formatValue(value: string | number | boolean): string {
  const text = String(value);
  return NEEDS_QUOTES.test(text) || text === '' ? JSON.stringify(text) : text;
}

export class Logger {
  readonly level: LogLevel;
  private readonly rank: number;
  private readonly json: boolean;
  private readonly sink: LogSink;
  private readonly fields: LogFields;

  constructor(options: LoggerOptions = {}) {
    this.level = options.level ?? 'info';
    this.rank = LEVEL_RANK[this.level];
    this.json = options.json ?? false;
    if (!options.sink) guardStderr();
    this.sink = options.sink ?? process.stderr;
    this.fields = options.fields ?? {};
  }

  child(fields: LogFields): Logger {
    return new Logger({ level: this.level, json: this.json, sink: this.sink, fields: { ...this.fields, ...fields } });
  }

  enabled(level: LogLevel): boolean {
    return LEVEL_RANK[level] >= this.rank;
  }

  debug(message: string, fields?: LogFields): void {
    if (this.rank <= 10) this.emit('debug', message, fields);
  }
  info(message: string, fields?: LogFields): void {
    if (this.rank <= 20) this.emit('info', message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    if (this.rank <= 30) this.emit('warn', message, fields);
  }
  error(message: string, fields?: LogFields): void {
    if (this.rank <= 40) this.emit('error', message, fields);
  }

  private emit(level: LogLevel, message: string, fields: LogFields | undefined): void {
    const time = new Date().toISOString();
    if (this.json) {
      const record: Record<string, unknown> = { time, level, msg: message };
      for (const [key, value] of Object.entries(this.fields)) if (value !== undefined && value !== null) record[key] = value;
      if (fields) for (const [key, value] of Object.entries(fields)) if (value !== undefined && value !== null) record[key] = value;
      this.sink.write(JSON.stringify(record) + '\n');
      return;
    }
    let line = `${time} ${level.toUpperCase().padEnd(5)} ${message}`;
    for (const source of [this.fields, fields]) {
      if (!source) continue;
      for (const key in source) {
        const value = source[key];
        if (value !== undefined && value !== null) line += ` ${key}=${formatValue(value)}`;
      }
    }
    this.sink.write(line + '\n');
  }
}

/**
 * At most `lines` log lines per `windowMs` for one kind of event a peer can
 * cause at will (refused connections, failed handshakes): a flood is a few
 * lines and a count, not a line per connection. No timer: what is dropped is
 * counted into the next line allowed.
 */
export class LogBudget {
  private windowStart = 0;
  private used = 0;
  private dropped = 0;

  constructor(
    private readonly lines: number,
    private readonly windowMs: number,
  ) {}

  /** Undefined: drop this line. Else how many were dropped since the last line allowed. */
  take(now = Date.now()): number | undefined {
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.used = 0;
    }
    if (this.used >= this.lines) {
      this.dropped++;
      return undefined;
    }
    this.used++;
    const dropped = this.dropped;
    this.dropped = 0;
    return dropped;
  }
}

/** A logger that drops everything (the default in libraries and tests). */
export const silentLogger = new Logger({ level: 'silent' });
