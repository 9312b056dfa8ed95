import { WmproxyCommand } from '../base.js';

export default class Schema extends WmproxyCommand {
  static override summary = 'Print the JSON Schema of the configuration file.';
  static override description = 'Editors use it to complete and check wmproxy.toml/.yaml/.json. The repository keeps it as wmproxy.schema.json.';
  static override examples = ['<%= config.bin %> schema > wmproxy.schema.json'];

  async run(): Promise<void> {
    await this.parseFlags(Schema);
    // Loaded here, not at the top: oclif imports every command module at start-up.
    const { jsonSchemaText } = await import('@wmproxy/config');
    process.stdout.write(jsonSchemaText());
  }
}
