export { Socks5Server } from './server.js';
export { DEFAULT_HANDSHAKE_TIMEOUT_MS, type Socks5ServerOptions } from './options.js';
export { SOCKS5_DEFAULTS } from './defaults.js';
export type { Connector } from './destination.js';
export { socks5Connect, replyError, type Socks5ConnectOptions, type Socks5Proxy } from './client.js';
export {
  SOCKS_VERSION,
  Method,
  Command,
  AddressType,
  encodeAddress,
  readAddress,
  encodeReply,
  encodeUdpDatagram,
  readUdpDatagram,
  type SocksAddress,
} from './protocol.js';
