import { WmproxyCommand } from '../base.js';
import { jsonSchemaText } from '@wmproxy/config';

export default class Schema extends WmproxyCommand {
  static override summary = 'Print the JSON Schema of the configuration file.';
  static override description = 'Editors use it to complete and check wmproxy.toml/.yaml/.json. The repository keeps it as wmproxy.schema.json.';
  static override examples = ['<%= config.bin %> schema > wmproxy.schema.json'];

  async run(): Promise<void> {
    await this.parseFlags(Schema);
    process.stdout.write(jsonSchemaText());
  }
}
