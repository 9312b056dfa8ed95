/**
 * Log destinations that can be reopened (SIGUSR1, for logrotate): `-` is a
 * standard stream, anything else a file opened for appending.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { AccessLog, formatAccess, type AccessLogFormat, type AccessRecord } from '@wmproxy/reverse';
import { Logger, type LogLevel } from '@wmproxy/core-net';
import type { LogConfig } from '@wmproxy/config';

export class ReopenableSink {
  private stream: WriteStream | undefined;
  readonly target: string;
  private readonly fallback: NodeJS.WritableStream;

  /** `target`: `-` for `fallback` (stdout or stderr), or a file path. */
  constructor(target: string, fallback: NodeJS.WritableStream) {
    this.target = target;
    this.fallback = fallback;
    this.open();
  }

  private open(): void {
    if (this.target === '-') return;
    mkdirSync(dirname(this.target), { recursive: true });
    const stream = createWriteStream(this.target, { flags: 'a' });
    // A full disk or a removed directory must not crash the proxy.
    stream.on('error', (error) => process.stderr.write(`wmproxy: cannot write ${this.target}: ${error.message}\n`));
    this.stream = stream;
  }

  write(line: string): boolean {
    return this.stream ? this.stream.write(line) : this.fallback.write(line);
  }

  /** Close the file and open it again by name (after logrotate moved it). */
  reopen(): void {
    if (this.target === '-') return;
    const old = this.stream;
    this.open();
    old?.end();
  }

  close(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    if (!stream) return Promise.resolve();
    return new Promise((resolve) => stream.end(resolve));
  }
}

/**
 * Observes every finished request (for metrics) and writes the access log
 * when one is configured. One instance lives as long as the Instance; a
 * reload changes its sink and format in place.
 */
export class MeteredAccessLog extends AccessLog {
  target: ReopenableSink | undefined;
  lineFormat: AccessLogFormat;

  constructor(
    private readonly observer: (record: AccessRecord) => void,
    sink: ReopenableSink | undefined,
    format: AccessLogFormat,
  ) {
    super({ write: () => true }, format);
    this.target = sink;
    this.lineFormat = format;
  }

  override log(record: AccessRecord): void {
    this.observer(record);
    this.target?.write(formatAccess(record, this.lineFormat) + '\n');
  }

  override close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The instance's logs: the error log (a Logger) and the access log's sink, both reopenable. */
export class LogSet {
  readonly logger: Logger;
  readonly errorSink: ReopenableSink;
  readonly accessSink: ReopenableSink | undefined;
  readonly config: LogConfig;

  constructor(config: LogConfig, level?: LogLevel) {
    this.config = config;
    this.errorSink = new ReopenableSink(config.file, process.stderr);
    this.accessSink = config.accessLog === undefined ? undefined : new ReopenableSink(config.accessLog, process.stdout);
    this.logger = new Logger({ level: level ?? config.level, json: config.format === 'json', sink: this.errorSink });
  }

  /** The logger of one service: its own level when `log.levels` names it. */
  loggerFor(service: string): Logger {
    const level = this.config.levels[service];
    if (level === undefined) return this.logger.child({ service });
    return new Logger({ level, json: this.config.format === 'json', sink: this.errorSink, fields: { service } });
  }

  sameAs(config: LogConfig): boolean {
    return JSON.stringify(config) === JSON.stringify(this.config);
  }

  reopen(): void {
    this.errorSink.reopen();
    this.accessSink?.reopen();
  }

  async close(): Promise<void> {
    await Promise.all([this.errorSink.close(), this.accessSink?.close()]);
  }
}
