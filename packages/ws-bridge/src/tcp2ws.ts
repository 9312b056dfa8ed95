import {
  connect, formatHostPort, HeadBuffer, isValidHost, NetError, parseResponseHead, toNetError,
  isFieldValue, isToken,
  type Conn, type ConnHandler, type HeaderList,
} from '@wmproxy/core-net';
import { Bridge, type BridgeStats } from './bridge.js';
import { WS_BRIDGE_DEFAULTS } from './defaults.js';
import { WsEndpoint } from './endpoint.js';
import { checkUpgradeResponse, newKey } from './handshake.js';
import { BridgeListener, type BridgeListenerOptions } from './listener.js';

export interface Tcp2WsOptions extends BridgeListenerOptions {
  /** `ws://` or `wss://` URL; its path and query are sent as they are. User info becomes Basic auth. */
  url: string;
  /** Host field to send instead of the URL's authority. */
  host?: string;
  /** TLS server name (SNI, and the name verified) instead of the URL's host. */
  servername?: string;
  /** Skip certificate verification (wss). Off unless asked for explicitly. */
  insecure?: boolean;
  /** Extra CA certificates (PEM) to verify the server with. */
  ca?: string | string[];
  /** Subprotocols to offer (Sec-WebSocket-Protocol). `base64` switches to base64 text if the server picks it. */
  subprotocols?: string[];
  origin?: string;
  /** Extra request fields. */
  headers?: HeaderList;
  maxMessageSize?: number;
  handshakeTimeoutMs?: number;
  connectTimeoutMs?: number;
  onBridgeClose?(stats: BridgeStats): void;
}

interface Dial {
  host: string;
  port: number;
  tls: boolean;
  /** The request head, ready to send but for the key. */
  requestHead: (key: string) => Uint8Array;
}

/** Parse and check a tcp2ws URL once, at start-up: every mistake is an error naming the field. */
export function planDial(options: Tcp2WsOptions): Dial {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new Error(`tcp2ws url "${options.url}" is not a URL`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new Error(`tcp2ws url "${options.url}" must be ws:// or wss://`);
  if (url.hash !== '') throw new Error('tcp2ws url must not carry a #fragment (RFC 6455 3)');
  const tls = url.protocol === 'wss:';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === '' ? (tls ? 443 : 80) : Number(url.port);
  const hostField = options.host ?? url.host;
  if (!isValidHost(hostField)) throw new Error(`tcp2ws Host "${hostField}" is not a valid host`);
  const target = (url.pathname === '' ? '/' : url.pathname) + url.search;
  const fields: HeaderList = [
    ['Host', hostField],
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Version', '13'],
  ];
  if (options.subprotocols && options.subprotocols.length > 0) {
    const bad = options.subprotocols.find((name) => !isToken(name));
    if (bad !== undefined) throw new Error(`tcp2ws subprotocol "${bad}" is not a token`);
    fields.push(['Sec-WebSocket-Protocol', options.subprotocols.join(', ')]);
  }
  if (options.origin !== undefined) fields.push(['Origin', options.origin]);
  if (url.username !== '' || url.password !== '') {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    fields.push(['Authorization', `Basic ${Buffer.from(credentials, 'utf8').toString('base64')}`]);
  }
  for (const [name, value] of options.headers ?? []) {
    if (!isToken(name) || !isFieldValue(value)) throw new Error(`tcp2ws header "${name}: ${value}" is not a valid field`);
    if (/^(host|upgrade|connection|sec-websocket-(key|version|protocol|extensions))$/i.test(name)) throw new Error(`tcp2ws header ${name} is set by the bridge`);
    fields.push([name, value]);
  }
  let head = `GET ${target} HTTP/1.1\r\n`;
  for (const [name, value] of fields) head += `${name}: ${value}\r\n`;
  const fixed = head;
  return { host, port, tls, requestHead: (key) => Buffer.from(`${fixed}Sec-WebSocket-Key: ${key}\r\n\r\n`, 'latin1') };
}

interface Handshake {
  owner: Tcp2WsServer;
  client: Conn;
  key: string;
  head: HeadBuffer;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * tcp2ws / tcp2wss: every accepted TCP connection becomes a WebSocket client
 * connection to one URL, relayed as binary messages. Bytes the TCP client
 * sends before the WebSocket is up wait in core-net's bounded buffer.
 */
export class Tcp2WsServer extends BridgeListener {
  readonly options: Tcp2WsOptions;
  private readonly dial: Dial;
  private readonly offered: string[];

  constructor(options: Tcp2WsOptions) {
    super(options);
    this.options = options;
    this.dial = planDial(options);
    this.offered = options.subprotocols ?? [];
  }

  protected accept(client: Conn): void {
    void this.open(client);
  }

  private async open(client: Conn): Promise<void> {
    const { host, port, tls } = this.dial;
    const address = formatHostPort(host, port);
    let upstream: Conn;
    try {
      upstream = await connect({
        host,
        port,
        timeoutMs: this.options.connectTimeoutMs ?? WS_BRIDGE_DEFAULTS.connectTimeoutMs,
        tls: tls ? { servername: this.options.servername ?? host, rejectUnauthorized: this.options.insecure !== true, ca: this.options.ca } : undefined,
      });
    } catch (error) {
      this.logger.warn('tcp2ws connect failed', { url: this.options.url, error: toNetError(error, address).message });
      client.destroy();
      return;
    }
    if (client.closed) {
      upstream.destroy();
      return;
    }
    upstream.setNoDelay(true);
    const key = newKey();
    const handshake: Handshake = {
      owner: this,
      client,
      key,
      head: new HeadBuffer(),
      timer: setTimeout(onHandshakeTimeout, this.options.handshakeTimeoutMs ?? WS_BRIDGE_DEFAULTS.handshakeTimeoutMs, upstream),
    };
    upstream.userData = handshake;
    upstream.setHandler(responseHandler);
    upstream.write(this.dial.requestHead(key));
  }

  /** @internal The 101 arrived (or something else did). */
  established(upstream: Conn, handshake: Handshake, result: ReturnType<typeof parseResponseHead>, view: Uint8Array): void {
    const { client } = handshake;
    if (result.kind !== 'ok') {
      this.fail(upstream, client, 'malformed handshake response');
      return;
    }
    const checked = checkUpgradeResponse(result.head, handshake.key, this.offered);
    if (typeof checked === 'string') {
      this.fail(upstream, client, checked);
      return;
    }
    if (client.closed) {
      upstream.destroy();
      return;
    }
    const ws = new WsEndpoint(upstream, { role: 'client', maxMessageSize: this.options.maxMessageSize ?? WS_BRIDGE_DEFAULTS.maxMessageSize });
    const bridge = new Bridge(ws, client, {
      encoding: checked.protocol === 'base64' ? 'base64' : 'binary',
      // A text message from the server is its data: forward it.
      text: 'forward',
      onClose: (done, stats) => {
        this.keepalive.delete(done);
        this.logger.debug('tcp2ws bridge closed', { client: client.remoteAddress, toWs: stats.bytesToTcp, toTcp: stats.bytesToWs, wsClose: stats.wsCloseCode, tcp: stats.tcpEnd });
        this.options.onBridgeClose?.(stats);
      },
    });
    this.keepalive.add(bridge);
    bridge.start(view.subarray(result.consumed).slice());
  }

  /** @internal */
  fail(upstream: Conn, client: Conn, why: string): void {
    this.logger.warn('tcp2ws handshake failed', { url: this.options.url, why });
    upstream.destroy(new NetError('EPROTO', why));
    client.destroy();
  }
}

function onHandshakeTimeout(upstream: Conn): void {
  const handshake = upstream.userData as Handshake;
  handshake.owner.fail(upstream, handshake.client, 'no handshake response in time');
}

const responseHandler: ConnHandler = {
  data(upstream, chunk) {
    const handshake = upstream.userData as Handshake;
    const view = handshake.head.feed(chunk);
    const result = parseResponseHead(view, { maxHeadSize: WS_BRIDGE_DEFAULTS.maxHeadSize });
    if (result.kind === 'incomplete') {
      handshake.head.keep(view);
      return;
    }
    clearTimeout(handshake.timer);
    handshake.head.clear();
    handshake.owner.established(upstream, handshake, result, view);
  },
  close(upstream, error) {
    const handshake = upstream.userData as Handshake;
    clearTimeout(handshake.timer);
    if (!handshake.client.closed) {
      handshake.owner.logger.warn('tcp2ws handshake failed', { url: handshake.owner.options.url, why: error?.message ?? 'closed before the handshake response' });
      handshake.client.destroy();
    }
  },
};
