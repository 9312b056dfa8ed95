import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Args, Flags } from '@oclif/core';
import { WmproxyCommand } from '../base.js';
import type { ConfigFile, ConfigFormat } from '@wmproxy/config';

export default class Convert extends WmproxyCommand {
  static override summary = 'Convert a configuration of the original Rust wmproxy to this format.';
  static override description = [
    'Prints the converted configuration (TOML unless --format says otherwise) and, on standard error, one warning per key that has no equivalent',
    'and one line per error: a wrongly typed value or an unknown key (then nothing is printed), or an open proxy (printed, to be edited).',
    'Exit status: 0 when the result is valid, 1 when it is not (or FILE cannot be read), 2 for bad arguments.',
  ].join('\n');
  static override examples = ['<%= config.bin %> convert wmproxy-old.toml > wmproxy.toml', '<%= config.bin %> convert config/reverse.yaml --format yaml'];
  static override args = {
    file: Args.string({ description: 'configuration in the original wmproxy format (.toml, .yaml, .yml or .json)', required: true }),
  };
  static override flags = {
    format: Flags.string({ description: 'output format', options: ['toml', 'yaml', 'json'], default: 'toml' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parseFlags(Convert);
    // Loaded here, not at the top: oclif imports every command module at start-up.
    const { ConfigError, buildConfig, convertOriginal, formatOf, isOriginalFormat, parseText, stringifyConfig } = await import('@wmproxy/config');
    const format = formatOf(args.file);
    if (!format) return this.usageError(`${args.file}: expected a file ending in .toml, .yaml, .yml or .json`);
    try {
      let text: string;
      try {
        text = await readFile(args.file, 'utf8');
      } catch (error) {
        throw new ConfigError(args.file, [{ file: args.file, path: '', expected: 'a readable file', found: (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String(error) }]);
      }
      const data = parseText(text, format, args.file);
      if (!isOriginalFormat(data)) {
        process.stderr.write(`warning: ${args.file}: already in the wmproxy format; printed as it is\n`);
        process.stdout.write(stringifyConfig(data as ConfigFile, flags.format as ConfigFormat));
        buildConfig(structuredClone(data), args.file, { baseDir: dirname(resolve(args.file)) });
        return;
      }
      const { config, warnings, issues, complete } = convertOriginal(data, { file: args.file, keepGoing: true });
      for (const warning of warnings) process.stderr.write(`warning: ${args.file}: ${warning}\n`);
      // A complete conversion is printed even when it is refused (an open proxy), so that it can be edited; one that dropped values is not.
      if (complete) process.stdout.write(stringifyConfig(config, flags.format as ConfigFormat));
      if (issues.length > 0) throw new ConfigError(args.file, issues);
      buildConfig(structuredClone(config), `${args.file} (converted)`, { baseDir: dirname(resolve(args.file)) });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      process.stderr.write(error.message + '\n');
      this.exit(1);
    }
  }
}
