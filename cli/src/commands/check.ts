import { Flags } from '@oclif/core';
import { WmproxyCommand } from '../base.js';

export default class Check extends WmproxyCommand {
  static override summary = 'Validate a configuration file without starting anything.';
  static override description = [
    'Reads FILE (TOML, YAML or JSON, by extension; the original wmproxy format is converted) and reports every error at once,',
    'each with the key path, what was expected and what was found.',
    'Exit status: 0 when valid, 1 when not, 2 for bad arguments.',
  ].join('\n');
  static override examples = ['<%= config.bin %> check -c wmproxy.toml', '<%= config.bin %> check -c wmproxy.yaml --json'];
  static override flags = {
    config: Flags.string({ char: 'c', description: 'configuration file', required: true }),
    json: Flags.boolean({ description: 'print the result as JSON', default: false }),
    quiet: Flags.boolean({ char: 'q', description: 'print nothing when valid', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(Check);
    // Loaded here, not at the top: oclif imports every command module at start-up.
    const { ConfigError, loadConfig } = await import('@wmproxy/config');
    try {
      const config = await loadConfig(flags.config);
      if (flags.json) {
        this.log(JSON.stringify({ valid: true, file: flags.config, warnings: config.warnings, errors: [] }, null, 2));
      } else {
        for (const warning of config.warnings) process.stderr.write(`warning: ${warning}\n`);
        const services = [
          `${config.proxies.length} forward prox${config.proxies.length === 1 ? 'y' : 'ies'}`,
          `${config.servers.length} server${config.servers.length === 1 ? '' : 's'}`,
          `${config.upstreams.length} upstream${config.upstreams.length === 1 ? '' : 's'}`,
          `${config.streams.length} stream${config.streams.length === 1 ? '' : 's'}`,
        ];
        if (config.tunnel.server) services.push(`a tunnel server on ${config.tunnel.server.listen}`);
        if (config.tunnel.clients.length > 0) services.push(`${config.tunnel.clients.length} tunnel client${config.tunnel.clients.length === 1 ? '' : 's'}`);
        if (!flags.quiet) this.log(`${flags.config}: valid (${services.join(', ')}${config.control.enabled ? `, control API on ${config.control.listen}` : ''})`);
      }
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      if (flags.json) this.log(JSON.stringify({ valid: false, file: flags.config, warnings: [], errors: error.issues }, null, 2));
      else process.stderr.write(error.message + '\n');
      this.exit(1);
    }
  }
}
