/**
 * Everything a tunnel server serves to web visitors, in one piece for the
 * CLI and `wmproxy run`: http mappings on the HTTP port (the reverse engine,
 * see http-front.ts), and on the HTTPS port https mappings passed through by
 * SNI and http mappings terminated with the server's certificate (tls-front.ts;
 * termination runs on an internal loopback listener the TLS port hands
 * connections to).
 */
import { silentLogger, type Logger, type TlsServerOptions } from '@wmproxy/core-net';
import type { LocationSpec, PolicyName, UpstreamHealthSpec } from '@wmproxy/reverse';
import { TunnelHttpFront } from './http-front.js';
import type { TunnelServer } from './server.js';
import { Handoffs, TunnelTlsFront } from './tls-front.js';

export interface TunnelWebOptions {
  /** HTTP port of http mappings. */
  httpListen?: string;
  /** HTTPS port: https mappings by SNI passthrough; http mappings too when `httpsTls` is given. */
  httpsListen?: string;
  /** Certificate (with SNI extras) to terminate TLS for http mappings on the HTTPS port. */
  httpsTls?: TlsServerOptions;
  /** Locations ahead of every mapping on `httpListen` (automatic HTTPS's HTTP-01 answers). */
  httpAhead?: LocationSpec[];
  policy?: PolicyName;
  /** Active checks of each client's local service, through its tunnel. */
  health?: UpstreamHealthSpec;
  /** Connection limits of both public ports (in all and per visitor IP), as on the other listeners. */
  limits?: VisitorLimits;
  logger?: Logger;
}

export interface VisitorLimits {
  maxConnections?: number;
  maxConnectionsPerIp?: number;
}

export class TunnelWeb {
  private http: TunnelHttpFront | undefined;
  private terminator: TunnelHttpFront | undefined;
  private tls: TunnelTlsFront | undefined;

  constructor(
    private readonly server: TunnelServer,
    private readonly options: TunnelWebOptions,
  ) {}

  get httpAddresses(): string[] {
    return this.http?.addresses ?? [];
  }

  get httpsAddresses(): string[] {
    return this.tls?.addresses ?? [];
  }

  /** The engines serving http mappings (upstream groups, health), plain then terminated. */
  get engines(): TunnelHttpFront[] {
    return [this.http, this.terminator].filter((front): front is TunnelHttpFront => front !== undefined);
  }

  async start(): Promise<this> {
    const logger = this.options.logger ?? silentLogger;
    const shared = { policy: this.options.policy, health: this.options.health, logger };
    try {
      const limits = this.options.limits ?? {};
      if (this.options.httpListen !== undefined) this.http = await new TunnelHttpFront(this.server, { ...shared, listen: this.options.httpListen, limits, ahead: this.options.httpAhead }).start();
      if (this.options.httpsListen !== undefined) {
        // Terminated visitors reach the engine from loopback: the handoffs name each one there.
        const handoffs = new Handoffs();
        if (this.options.httpsTls) this.terminator = await new TunnelHttpFront(this.server, { ...shared, tlsListen: '127.0.0.1:0', tls: this.options.httpsTls, handoffs }).start();
        this.tls = await new TunnelTlsFront(this.server, { listen: this.options.httpsListen, terminate: this.terminator?.addresses[0], handoffs, limits, logger }).start();
      }
    } catch (error) {
      await this.close();
      throw error;
    }
    return this;
  }

  async close(): Promise<void> {
    await this.tls?.close();
    await this.terminator?.close();
    await this.http?.close();
  }
}
