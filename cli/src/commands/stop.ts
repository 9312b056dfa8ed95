import { ControlCommand, controlFlags } from './_control.js';

export default class Stop extends ControlCommand {
  static override summary = 'Stop a running wmproxy gracefully.';
  static override description = 'Calls POST /stop: listeners close, connections in flight finish (up to the shutdown timeout), then the process exits. Exit status: 0, 1 when unreachable or refused, 2 for bad arguments.';
  static override examples = ['<%= config.bin %> stop', '<%= config.bin %> stop --control 127.0.0.1:8837 --token $TOKEN'];
  static override flags = controlFlags;

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(Stop);
    let body: unknown;
    try {
      body = (await (await this.client(flags)).request('POST', '/stop')).body;
    } catch (error) {
      return this.fail(error);
    }
    this.log(flags.json ? JSON.stringify(body, null, 2) : 'stopping');
  }
}
