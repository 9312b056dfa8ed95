import { Command, type Interfaces } from '@oclif/core';
import type { LogFields, Logger } from '@wmproxy/core-net';

type FlagOutput = { [name: string]: unknown };
type ArgOutput = { [name: string]: unknown };

/** A bad flag or argument found after parsing: `WmproxyCommand.usageError` prints it (exit 2). */
export class UsageError extends Error {}

/**
 * The base of every wmproxy command: a bad flag, argument or value is one
 * line on standard error (`wmproxy <cmd>: <what was wrong>`) and exit status 2.
 */
export abstract class WmproxyCommand extends Command {
  protected async parseFlags<F extends FlagOutput, B extends FlagOutput, A extends ArgOutput>(
    options: Interfaces.Input<F, B, A>,
  ): Promise<Interfaces.ParserOutput<F, B, A>> {
    try {
      return await this.parse(options);
    } catch (error) {
      return this.usageError(error instanceof Error ? error.message : String(error));
    }
  }

  /** Print one line and exit 2. oclif's multi-line parse errors are folded into that line. */
  protected usageError(message: string): never {
    const line = message
      .split('\n')
      .map((part) => part.trim())
      .filter((part) => part !== '' && !/^The following error occurred|^See more help/.test(part))
      .join(' ');
    process.stderr.write(`wmproxy ${this.id ?? ''}: ${line}\n`);
    return this.exit(2);
  }

  /**
   * Start `server` and serve until SIGINT or SIGTERM, then drain it for up to
   * `drainMs` and exit 0; a server that cannot start is logged and exits 1.
   * Handlers go in first: a supervisor may signal as soon as it sees a line.
   */
  protected async serveUntilStopped(
    server: { start(): Promise<unknown>; shutdown(options: { deadlineMs: number }): Promise<{ forced: number }> },
    logger: Logger,
    drainMs: number,
    startFailure: string,
    stopFields: () => LogFields = () => ({}),
  ): Promise<never> {
    const stop = async (signal: string): Promise<void> => {
      logger.info('shutting down', { signal, ...stopFields() });
      const { forced } = await server.shutdown({ deadlineMs: drainMs });
      logger.info('stopped', { forced });
      process.exit(0);
    };
    process.once('SIGINT', () => void stop('SIGINT'));
    process.once('SIGTERM', () => void stop('SIGTERM'));
    try {
      await server.start();
    } catch (error) {
      logger.error(startFailure, { error: (error as Error).message });
      return this.exit(1);
    }
    return new Promise<never>(() => {});
  }
}
