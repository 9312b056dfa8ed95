import { readFile } from 'node:fs/promises';
import { Flags } from '@oclif/core';
import { WmproxyCommand } from '../../base.js';
import { openStore, storeFlag } from './_store.js';

export default class ConfigPush extends WmproxyCommand {
  static override summary = 'Validate a configuration file, then store it for every instance that follows the store.';
  static override description = [
    'The file is validated as `wmproxy check` does (its ${ENV} references resolved from this environment); an invalid file is never written.',
    'It is stored as written, references included, with a compare-and-swap on the stored revision:',
    'a push made by someone else since it was read is refused, nothing is overwritten.',
    'Exit status: 0 when stored, 1 when invalid, refused or the store is unreachable, 2 for bad arguments.',
  ].join('\n');
  static override examples = ['<%= config.bin %> config push -c wmproxy.toml --store etcd://127.0.0.1:2379/wmproxy'];
  static override flags = {
    config: Flags.string({ char: 'c', description: 'configuration file (.toml, .yaml, .yml, .json)', required: true }),
    store: storeFlag,
    'expect-revision': Flags.integer({ description: 'store only if the stored configuration is at this revision (0: nothing stored); default: the revision read before validating', min: 0 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(ConfigPush);
    const { ConfigError, formatOf, parseConfig } = await import('@wmproxy/config');
    const { StoreError } = await import('@wmproxy/cluster');
    const format = formatOf(flags.config);
    if (!format) return this.usageError(`-c ${flags.config}: expected a file ending in .toml, .yaml, .yml or .json`);
    const store = await openStore(flags.store);
    if (typeof store === 'string') return this.usageError(store);
    try {
      const text = await readFile(flags.config, 'utf8');
      const expected = flags['expect-revision'] ?? (await store.read())?.revision ?? 0;
      parseConfig(text, format, flags.config);
      const revision = await store.push(text, format, expected);
      this.log(`${flags.config}: stored in ${store.url.display} at revision ${revision}`);
    } catch (error) {
      if (error instanceof ConfigError || error instanceof StoreError) {
        process.stderr.write(`${error.message}\n`);
        return this.exit(1);
      }
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        process.stderr.write(`${flags.config}: no such file\n`);
        return this.exit(1);
      }
      throw error;
    } finally {
      await store.close();
    }
  }
}
