export type {
  Conn,
  ConnHandler,
  ConnTracker,
  ConnectOptions,
  Listener,
  ListenOptions,
  RawConnectOptions,
  Runtime,
  TlsClientOptions,
  TlsServerOptions,
  TlsKeyPair,
  TlsSession,
} from './types.js';
export { parseClientHello, type ClientHello } from './tls/client-hello.js';
export {
  parseAddress,
  parseAddressList,
  formatAddress,
  formatHostPort,
  listenHost,
  isLoopback,
  isValidHostname,
  AddressError,
  type Address,
} from './address.js';
export { CidrList, AccessPolicy, CidrError, parseCidr, normaliseIp, parseIp, type IpValue } from './cidr.js';
export {
  DEFAULT_DENY_DESTINATIONS,
  DEFAULT_CONNECT_PORTS,
  embeddedIpv4,
  isDeniedDestination,
  protectLocalPort,
  resolveDestination,
} from './destination-policy.js';
export {
  NetError,
  toNetError,
  httpStatusFor,
  socksReplyFor,
  SocksReply,
  type NetErrorCode,
} from './errors.js';
export { Logger, LogBudget, silentLogger, type LogLevel, type LogFields, type LoggerOptions, type LogSink } from './logger.js';
export { connect, systemResolver, DEFAULT_CONNECT_TIMEOUT_MS, type ConnectTarget, type Resolver } from './connect.js';
export { relay, Relay, DEFAULT_IDLE_TIMEOUT_MS, type RelayOptions, type RelayStats } from './relay.js';
export { Server, shareListenersByDefault, type ServerOptions, type ShutdownOptions } from './server.js';
export {
  AddressCounts,
  ConnLimit,
  HandshakeSlots,
  type HandshakeSlotOptions,
  DEFAULT_PROCESS_MAX_CONNECTIONS,
  processConnections,
  setProcessConnectionLimit,
  type ConnLimitKind,
  type ConnLimitOptions,
} from './conn-limit.js';
export {
  SourcePenalties,
  sourceOf,
  DEFAULT_PENALTY_ALLOWANCE,
  DEFAULT_PENALTY_FIRST_MS,
  DEFAULT_PENALTY_MAX_MS,
  DEFAULT_PENALTY_MAX_SOURCES,
  type SourcePenaltyOptions,
} from './penalty.js';
export { bindUdp, UdpEndpoint, type UdpPacketHandler } from './udp.js';
export { releaseConn } from './conn-base.js';
export { CORE_NET_DEFAULTS } from './defaults.js';
export { Ticker, type TickJob, type TimerFire } from './ticker.js';
export { runtime, runtimeReady, setRuntime, nodeRuntime } from './runtime/index.js';
export { hostRuntime, runtimeName, supportsReusePort, hasCluster } from './runtime/facts.js';
export { WorkerPool, workerSharing, WORKER_START_TIMEOUT_MS, type PoolMessage, type WorkerPoolOptions, type WorkerPoolView } from './workers/supervisor.js';
export { checkPortFree } from './workers/ports.js';
export { listenError, type ListenError } from './runtime/listen-error.js';
export * from './http1/index.js';
export { createSelfSignedCertificate, certificateFingerprint, normaliseFingerprint, type SelfSigned, type SelfSignedOptions } from './tls/self-signed.js';
export {
  socketTransport,
  tcpTransport,
  tlsTransport,
  transportMap,
  type Transport,
  type TransportMap,
  type TransportTarget,
  type SocketTransportOptions,
} from './transport.js';
export { VirtualConn, connPair, DEFAULT_PAIR_HIGH_WATER_MARK } from './virtual-conn.js';
export * from './http2/index.js';
export {
  WireError,
  WireType,
  GrpcStatus,
  writeVarint,
  encodeVarint,
  readVarint,
  decodeFields,
  encodeFields,
  grpcStatusName,
  encodeGrpcMessage,
  decodeGrpcMessages,
  formatGrpcTimeout,
  decodeGrpcMessageField,
  parseGrpcTimeout,
  encodeGrpcTimeout,
  encodeGrpcMessageField,
  type ProtobufField,
} from './grpc/wire.js';
