import { rename, writeFile } from 'node:fs/promises';
import { Flags } from '@oclif/core';
import { WmproxyCommand } from '../../base.js';
import { openStore, storeFlag } from './_store.js';

export default class ConfigPull extends WmproxyCommand {
  static override summary = 'Write the stored configuration to a file (or standard output), as it was pushed.';
  static override description = 'Exit status: 0 when written, 1 when nothing is stored or the store is unreachable, 2 for bad arguments.';
  static override examples = ['<%= config.bin %> config pull --store etcd://127.0.0.1:2379/wmproxy -o wmproxy.toml'];
  static override flags = {
    store: storeFlag,
    output: Flags.string({ char: 'o', description: 'file to write (default: standard output)' }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(ConfigPull);
    const { StoreError } = await import('@wmproxy/cluster');
    const store = await openStore(flags.store);
    if (typeof store === 'string') return this.usageError(store);
    try {
      const stored = await store.read();
      if (!stored) {
        process.stderr.write(`${store.url.display}: no configuration stored yet\n`);
        return this.exit(1);
      }
      if (flags.output === undefined) process.stdout.write(stored.text);
      else {
        // Atomic: a reader never sees half a file.
        const temporary = `${flags.output}.${process.pid}.tmp`;
        await writeFile(temporary, stored.text);
        await rename(temporary, flags.output);
        process.stderr.write(`${flags.output}: revision ${stored.revision} (${stored.format})${stored.pushedAt ? `, pushed ${stored.pushedAt}` : ''}\n`);
      }
    } catch (error) {
      if (error instanceof StoreError) {
        process.stderr.write(`${error.message}\n`);
        return this.exit(1);
      }
      throw error;
    } finally {
      await store.close();
    }
  }
}
