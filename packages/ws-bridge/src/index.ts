/**
 * @wmproxy/ws-bridge: WebSocket ↔ TCP bridges (websockify's ws2tcp, and
 * tcp2ws / tcp2wss clients) over core-net Conns, with an RFC 6455 codec of
 * its own (see README: chosen by measurement against `ws`).
 */
export { Ws2TcpServer, type Ws2TcpOptions, type TargetConnector, type TargetRequest } from './ws2tcp.js';
export { Tcp2WsServer, planDial, type Tcp2WsOptions } from './tcp2ws.js';
export { Bridge, type BridgeOptions, type BridgeStats, type TextPolicy } from './bridge.js';
export { WsEndpoint, type WsEvents, type WsEndpointOptions } from './endpoint.js';
export { Keepalive, type KeepaliveOptions } from './keepalive.js';
export {
  FrameParser, encodeFrame, frameInHeadroom, unmask, unmaskJs, unmaskWasm, unmaskUsesWasm, closePayload, parseClosePayload, isSendableCloseCode,
  OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG,
  CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR, CLOSE_UNSUPPORTED_DATA, CLOSE_NO_STATUS, CLOSE_ABNORMAL,
  CLOSE_INVALID_DATA, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL_ERROR,
  type FrameSink, type FrameParserOptions, type DataOpcode, type ControlOpcode, type ParsedClose,
} from './frame.js';
export { Utf8Validator, isValidUtf8 } from './utf8.js';
export { Base64Decoder, encodeBase64 } from './base64.js';
export { acceptKey, newKey, checkUpgrade, checkUpgradeResponse, authorized, type AuthOptions, type UpgradeRequest, type HandshakeRefusal } from './handshake.js';
export { TokenFile, parseTokenFile, parseHostPort, TokenFileError, type HostPort } from './tokens.js';
export { WS_BRIDGE_DEFAULTS } from './defaults.js';
