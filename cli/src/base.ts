import { Command, type Interfaces } from '@oclif/core';

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
}
