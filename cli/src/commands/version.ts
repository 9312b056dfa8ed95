import { runtimeReady } from '@wmproxy/core-net';
import { WmproxyCommand } from '../base.js';

export default class Version extends WmproxyCommand {
  static override summary = 'Print the wmproxy version and the runtime it runs on.';
  static override enableJsonFlag = true;

  async run(): Promise<{ version: string; runtime: string; runtimeVersion: string }> {
    await this.parseFlags(Version);
    const runtime = await runtimeReady();
    const bunVersion = (process.versions as Record<string, string | undefined>).bun;
    const info = {
      version: this.config.version,
      runtime: runtime.name,
      runtimeVersion: runtime.name === 'bun' && bunVersion ? bunVersion : process.versions.node,
    };
    this.log(`wmproxy ${info.version} (${info.runtime} ${info.runtimeVersion})`);
    return info;
  }
}
