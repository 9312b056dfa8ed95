import { buildConfig } from './load.js';
import { DEFAULT_CONTROL_LISTEN, DEFAULT_PROXY_LISTEN } from './resolve.js';
import type { ConfigFile } from './schema.js';
import type { WmproxyConfig } from './types.js';

/**
 * The embedded default (what `wmproxy run` uses without `-c`): the mixed
 * forward proxy (HTTP, HTTPS, SOCKS5 on one port) on 127.0.0.1:8090 and the
 * control API and dashboard on 127.0.0.1:8837, as the original wmproxy.
 */
export const DEFAULT_CONFIG: ConfigFile = {
  control: { listen: DEFAULT_CONTROL_LISTEN },
  proxy: [{ name: 'proxy', listen: DEFAULT_PROXY_LISTEN, protocols: ['http', 'https', 'socks5'] }],
};

export function defaultConfig(): WmproxyConfig {
  return buildConfig(structuredClone(DEFAULT_CONFIG), '<default>');
}
