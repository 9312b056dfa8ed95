import { Flags } from '@oclif/core';
import type { ConfigStore } from '@wmproxy/cluster';

/** `--store`, shared by `config push` and `config pull`. */
export const storeFlag = Flags.string({ description: 'etcd://HOST:PORT[,HOST:PORT...]/PREFIX', required: true, env: 'WMPROXY_STORE' });

/** The store of `--store URL`, or the reason the URL is wrong (a usage error). */
export async function openStore(url: string): Promise<ConfigStore | string> {
  const { ConfigStore } = await import('@wmproxy/cluster');
  try {
    return new ConfigStore(url);
  } catch (error) {
    return `--store: ${(error as Error).message}`;
  }
}
