import { ControlCommand, controlFlags } from './_control.js';
import type { ReloadResult } from '@wmproxy/control';

export default class Reload extends ControlCommand {
  static override summary = 'Make a running wmproxy read its configuration file again.';
  static override description = 'Calls POST /reload. An invalid file is rejected with its errors and the running configuration stays. Exit status: 0 when applied, 1 when rejected or unreachable, 2 for bad arguments.';
  static override examples = ['<%= config.bin %> reload', '<%= config.bin %> reload --control 127.0.0.1:8837 --token $TOKEN'];
  static override flags = controlFlags;

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(Reload);
    let result: ReloadResult;
    try {
      result = (await (await this.client(flags)).request<ReloadResult>('POST', '/reload', [422])).body;
    } catch (error) {
      return this.fail(error);
    }
    if (flags.json) this.log(JSON.stringify(result, null, 2));
    else if (result.ok) {
      this.log(result.changes.length > 0 ? `reloaded:\n${result.changes.map((change) => `  ${change}`).join('\n')}` : 'reloaded: no change');
      for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
    } else {
      process.stderr.write('reload rejected, the running configuration stays:\n');
      const { formatIssue } = await import('@wmproxy/config');
      if (result.errors) for (const issue of result.errors) process.stderr.write(`  ${formatIssue(issue)}\n`);
      else process.stderr.write(`  ${result.message ?? 'unknown error'}\n`);
    }
    this.exit(result.ok ? 0 : 1);
  }
}
