import { readFile } from 'node:fs/promises';
import { Flags } from '@oclif/core';
import { UsageError } from './base.js';

/** `--cert`, `--key`, `--h2c`: the flags of the commands that serve HTTP (reverse-proxy, file-server). */
export const http2Flags = {
  cert: Flags.string({ description: 'serve HTTPS with this certificate chain (PEM); HTTP/2 and HTTP/1.1 are offered by ALPN (h2,http/1.1)' }),
  key: Flags.string({ description: 'private key (PEM) of --cert' }),
  h2c: Flags.boolean({ description: 'without --cert: also accept cleartext HTTP/2 by prior knowledge (h2c) beside HTTP/1.1', default: false }),
};

export interface ListenerProtocols {
  tls: { cert: string; key: string } | undefined;
  /** A listener's `http2` (reverse ListenerSpec): true (ALPN over TLS) or "h2c". */
  http2: true | 'h2c';
}

/** Check and read the flags: both or neither of --cert/--key, --h2c only without them. */
export async function listenerProtocols(flags: { cert?: string; key?: string; h2c: boolean }): Promise<ListenerProtocols> {
  if ((flags.cert === undefined) !== (flags.key === undefined)) throw new UsageError('--cert and --key go together');
  if (flags.cert !== undefined && flags.h2c) throw new UsageError('--h2c is for cleartext listeners: with --cert, HTTP/2 is offered by ALPN');
  if (flags.cert === undefined) return { tls: undefined, http2: flags.h2c ? 'h2c' : true };
  const read = (flag: string, file: string): Promise<string> =>
    readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw new UsageError(`--${flag}: cannot read "${file}" (${error.code ?? error.message})`);
    });
  const [cert, key] = await Promise.all([read('cert', flags.cert), read('key', flags.key!)]);
  return { tls: { cert, key }, http2: true };
}
