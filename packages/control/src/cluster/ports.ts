/**
 * Port 0 ("any free port") cannot be shared by several processes: each would
 * get its own. Before workers start, the primary replaces every `:0` listen
 * address with a concrete free port, and keeps the choice across reloads so
 * that an unchanged listener keeps its socket.
 *
 * Workers may bind with SO_REUSEPORT, which would also join a port that
 * another program holds with it and split its connections. So the primary
 * first checks every TCP port it has not checked yet with core-net's
 * `checkPortFree`: a port anyone holds fails there with EADDRINUSE.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { checkPortFree, formatHostPort, listenHost, parseAddress } from '@wmproxy/core-net';
import type { WmproxyConfig } from '@wmproxy/config';

async function freePort(host: string, protocol: 'tcp' | 'udp'): Promise<number> {
  if (protocol === 'udp') {
    const socket = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, host, () => resolve());
    });
    const port = socket.address().port;
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    return port;
  }
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address ? address.port : 0;
}

export class PortPinner {
  /** `kind/name/position/address` → the pinned address. */
  private readonly pinned = new Map<string, string>();
  /** TCP addresses (`host:port` as bound) found free before: our workers hold them now. */
  private checked = new Set<string>();

  /** A copy of `config` with every `:0` listen address made concrete. */
  async pin(config: WmproxyConfig): Promise<WmproxyConfig> {
    const pinList = async (kind: string, name: string, listen: readonly string[], protocol: 'tcp' | 'udp'): Promise<string[]> => {
      const out: string[] = [];
      for (const [position, address] of listen.entries()) {
        const parsed = parseAddress(address);
        if (parsed.port !== 0) {
          out.push(address);
          continue;
        }
        const key = `${kind}/${name}/${position}/${address}`;
        let concrete = this.pinned.get(key);
        if (!concrete) {
          const host = listenHost(parsed);
          concrete = formatHostPort(host, await freePort(host, protocol));
          this.pinned.set(key, concrete);
        }
        out.push(concrete);
      }
      return out;
    };
    const proxies = [];
    for (const proxy of config.proxies) proxies.push({ ...proxy, listen: await pinList('proxy', proxy.name, proxy.listen, 'tcp') });
    const servers = [];
    for (const server of config.servers) servers.push({ ...server, listen: await pinList('server', server.name, server.listen, 'tcp') });
    const streams = [];
    for (const stream of config.streams) streams.push({ ...stream, listen: await pinList('stream', stream.name, stream.listen, stream.protocol === 'udp' ? 'udp' : 'tcp') });
    await this.checkNewPorts([...proxies, ...servers, ...streams.filter((stream) => stream.protocol !== 'udp')].flatMap((service) => service.listen));
    return { ...config, proxies, servers, streams };
  }

  /** Fail on a TCP port someone else holds, before any worker could join it; ports already ours are skipped. */
  private async checkNewPorts(listen: readonly string[]): Promise<void> {
    const wanted = new Set<string>();
    for (const text of listen) {
      const address = parseAddress(text);
      wanted.add(formatHostPort(listenHost(address), address.port));
    }
    const pinnedNow = new Set(this.pinned.values());
    for (const key of wanted) {
      // A pinned port was found free by `freePort` itself; servers sharing one listener name it twice.
      if (this.checked.has(key) || pinnedNow.has(key)) continue;
      const address = parseAddress(key);
      await checkPortFree(address.host, address.port);
    }
    // Removed listeners close, so their ports are checked again should they come back.
    this.checked = wanted;
  }
}
