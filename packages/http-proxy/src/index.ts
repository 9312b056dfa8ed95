/**
 * @wmproxy/http-proxy: the HTTP/HTTPS forward proxy and the mixed
 * HTTP/HTTPS/SOCKS5 port.
 *
 * - `HttpProxyServer` serves absolute-form requests (keep-alive, a different
 *   host per request allowed) and CONNECT tunnels on accepted connections.
 * - `ForwardProxy` dispatches a connection on its first byte: 0x05 to
 *   SOCKS5 (`@wmproxy/socks5`), anything else to `HttpProxyServer`.
 * - `createForwardProxyServer(options)` wraps it in a core-net `Server`.
 */
export { HttpProxyServer } from './server.js';
export {
  ForwardProxy,
  createForwardProxyServer,
  DEFAULT_FORWARD_BIND,
  type ForwardFlag,
  type ForwardProxyOptions,
  type ForwardProxyServerOptions,
  type ForwardSocks5Options,
} from './forward.js';
export { HTTP_PROXY_DEFAULTS } from './defaults.js';
export { DEFAULT_HEADER_TIMEOUT_MS, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, type HttpProxyOptions } from './options.js';
export { BasicAuth, basicCredentials } from '@wmproxy/core-net';
export { parseAbsoluteTarget, parseConnectTarget, parseAuthority, TargetError, type Target } from './target.js';
export {
  parseParentProxy,
  connectParent,
  parentTransport,
  directConnector,
  parentConnector,
  httpTunnel,
  ParentProxyError,
  type Connector,
  type ParentProxy,
  type ParentTlsOptions,
} from './upstream.js';
export { openProxyRefusal, exposedAddress, type ExposureOptions } from './exposure.js';
