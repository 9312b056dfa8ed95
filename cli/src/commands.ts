import Version from './commands/version.js';

/** Every command, by name (oclif's explicit strategy: no directory scan at start-up). */
export const commands = {
  version: Version,
};
