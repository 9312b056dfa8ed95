import dgram from 'node:dgram';
import { isIP } from 'node:net';

export interface UdpPacketHandler {
  message(endpoint: UdpEndpoint, data: Uint8Array, fromAddress: string, fromPort: number): void;
  error?(endpoint: UdpEndpoint, error: Error): void;
}

/**
 * A bound UDP socket. node:dgram is used on both runtimes (Bun implements it
 * natively); UDP relaying is per-datagram, so there is no stream fast path to win.
 */
export class UdpEndpoint {
  private readonly socket: dgram.Socket;
  private closed = false;
  userData: unknown;
  constructor(socket: dgram.Socket, handler: UdpPacketHandler) {
    this.socket = socket;
    socket.on('message', (data, info) => handler.message(this, data, info.address, info.port));
    socket.on('error', (error) => handler.error?.(this, error));
  }
  get address(): string {
    return this.socket.address().address;
  }
  get port(): number {
    return this.socket.address().port;
  }
  send(data: Uint8Array, port: number, host: string): void {
    if (this.closed) return;
    this.socket.send(data, port, host);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}

/** Bind a UDP socket on `host` (IPv4 or IPv6 literal; `::` binds dual-stack). Port 0 picks one. */
export function bindUdp(host: string, port: number, handler: UdpPacketHandler): Promise<UdpEndpoint> {
  const type = isIP(host) === 4 ? 'udp4' : 'udp6';
  const socket = dgram.createSocket({ type, ipv6Only: false });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, host, () => {
      socket.off('error', reject);
      resolve(new UdpEndpoint(socket, handler));
    });
  });
}
