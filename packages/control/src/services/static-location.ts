/** The `static = {…}` settings of a location as `@wmproxy/static` options (which `@wmproxy/reverse` serves them with). */
import type { StaticOptions } from '@wmproxy/static';
import type { StaticConfig } from '@wmproxy/config';

export function staticOptions(config: StaticConfig): StaticOptions {
  return {
    root: config.root,
    index: config.index,
    browse: config.browse,
    spa: config.spa,
    ...(config.tryFiles ? { tryFiles: config.tryFiles } : {}),
    ...(config.notFound ? { notFoundPage: config.notFound } : {}),
    precompressed: config.precompressed,
    hide: config.hide,
    dotfiles: config.dotfiles ? 'allow' : 'ignore',
    cacheControl: Object.entries(config.cacheControl).map(([pattern, value]) => ({ pattern, value })),
    cors: config.cors,
  };
}
