import { Flags } from '@oclif/core';
import type { ControlClient } from '@wmproxy/control';
import { WmproxyCommand } from '../base.js';

/** Flags and the client shared by `status`, `reload` and `stop`. */
export const controlFlags = {
  control: Flags.string({ description: 'address of the control API', default: '127.0.0.1:8837', env: 'WMPROXY_CONTROL' }),
  token: Flags.string({ description: 'bearer token of the control API', env: 'WMPROXY_TOKEN' }),
  json: Flags.boolean({ description: 'print the answer as JSON', default: false }),
};

export abstract class ControlCommand extends WmproxyCommand {
  /** Loaded on use: the control package brings Elysia, which other commands should not pay for at start-up. */
  protected async client(flags: { control: string; token?: string | undefined }): Promise<ControlClient> {
    const { ControlClient } = await import('@wmproxy/control');
    return new ControlClient({ address: flags.control, ...(flags.token ? { token: flags.token } : {}) });
  }

  /** One line on stderr and exit 1 for an unreachable or refusing API. */
  protected fail(error: unknown): never {
    if (!(error instanceof Error) || error.name !== 'ControlClientError') throw error;
    process.stderr.write(`wmproxy ${this.id ?? ''}: ${error.message}\n`);
    return this.exit(1);
  }
}
