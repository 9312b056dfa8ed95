/**
 * The handshake: challenge/response on a shared token, never sent in clear.
 *
 *   client → HELLO     "WMTU" version(1) clientNonce(32) [client name]
 *   server → CHALLENGE version(1) serverNonce(32) serverId
 *   client → AUTH      HMAC-SHA256(token, "wmtunnel-client" | clientNonce | serverNonce | serverId) [client name]
 *   server → AUTH_OK   HMAC-SHA256(token, "wmtunnel-server" | serverNonce | clientNonce | serverId) + JSON settings
 *            or ERROR  reason (then close)
 *
 * The server's nonce is fresh per connection, so a captured AUTH is worthless
 * later (replay fails); AUTH_OK proves the server knows the token as well, so
 * a client is not fooled by an impostor that merely terminates TLS.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { NetError } from '@wmproxy/core-net';
import { FrameQueue, FrameType, MAGIC, PROTOCOL_VERSION, decodeJson, decodeReason, encodeJson, type FrameType as FrameTypeT } from './frame.js';
import type { Mux } from './mux.js';

export const NONCE = 32;
export const MAC = 32;
const CLIENT_LABEL = Buffer.from('wmtunnel-client');
const SERVER_LABEL = Buffer.from('wmtunnel-server');
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const WRONG_TOKEN = 'authentication failed: wrong token';

/** A server handshake failed on the token (not on a timeout or a foreign protocol): what earns a penalty. */
export function isWrongToken(error: Error): boolean {
  return error instanceof NetError && error.code === 'EAUTH' && error.message === WRONG_TOKEN;
}
const utf8 = new TextDecoder();
/**
 * Session HELLO flag: this client can move a stream to a data connection
 * (MOVE/MOVED, see data.ts). An older server ignores it; a server promotes
 * only the streams of clients that sent it.
 */
export const HELLO_CAN_MOVE = 4;

/** One client credential the server accepts, with what it may expose. */
export interface ClientCredential {
  /** Name in logs and the clients snapshot (default: "client N"). */
  name?: string;
  token: string;
  /** Public ports this client may ask for; undefined: the server-wide list applies. */
  allowPorts?: PortRange[];
  /** Domains this client may serve over http/https (`*.example.com` allowed); undefined: the server-wide list. */
  allowDomains?: string[];
}

export interface PortRange {
  from: number;
  to: number;
}

function mac(token: string, label: Buffer, first: Uint8Array, second: Uint8Array, serverId: string): Buffer {
  return createHmac('sha256', token).update(label).update(first).update(second).update(serverId).digest();
}

/** HELLO's payload: "WMTU" version clientNonce, then the client's name (a session) or the session id (a data connection). */
export function helloPayload(clientNonce: Uint8Array, tail: Uint8Array): Uint8Array {
  const hello = new Uint8Array(MAGIC.length + 1 + NONCE + tail.byteLength);
  hello.set(MAGIC, 0);
  hello[MAGIC.length] = PROTOCOL_VERSION;
  hello.set(clientNonce, MAGIC.length + 1);
  hello.set(tail, MAGIC.length + 1 + NONCE);
  return hello;
}

/** CHALLENGE's payload: version serverNonce serverId. */
export function challengePayload(serverNonce: Uint8Array, serverId: string): Uint8Array {
  const id = Buffer.from(serverId);
  const challenge = new Uint8Array(1 + NONCE + id.byteLength);
  challenge[0] = PROTOCOL_VERSION;
  challenge.set(serverNonce, 1);
  challenge.set(id, 1 + NONCE);
  return challenge;
}

/** Settings the server announces in AUTH_OK. */
export interface SessionSettings {
  heartbeatMs: number;
  sessionId: string;
  /** Idle data connections the client should keep open (absent or 0: none; see data.ts). */
  dataPool?: number;
}

export interface AuthResult {
  credential: ClientCredential;
  /** The client understands MOVE (its HELLO carried HELLO_CAN_MOVE). */
  canMove: boolean;
  /** The name the client announced (informational; the credential decides). */
  announcedName: string;
}

interface Received {
  type: FrameTypeT;
  flags: number;
  payload: Uint8Array;
}

/** Handshake frames of a mux's session, in order (see FrameQueue). */
class HandshakeReader {
  private readonly frames: FrameQueue<Received>;

  constructor(mux: Mux) {
    this.frames = new FrameQueue<Received>(
      'tunnel handshake',
      (error) => mux.destroy(error),
      () => mux.protocolError('too many handshake frames'),
    );
    mux.setEvents({
      // The payload may be a view of a chunk the runtime hands on: copy it (a Buffer's slice() would be a view).
      control: (_mux, type, flags, payload) => this.frames.push({ type, flags, payload: new Uint8Array(payload) }),
      close: (_mux, error) => this.frames.fail(error ?? new NetError('ECONNRESET', 'tunnel connection closed during the handshake')),
    });
  }

  next(timeoutMs: number, what: string): Promise<Received> {
    return this.frames.next(timeoutMs, what);
  }
}

/**
 * Server side. Resolves with the matching credential; on failure sends
 * ERROR with a reason, closes, and rejects with an EAUTH NetError.
 */
export async function serverHandshake(
  mux: Mux,
  /** `settings` may depend on whether the client can move streams (HELLO_CAN_MOVE). */
  options: { credentials: readonly ClientCredential[]; serverId: string; settings: SessionSettings | ((canMove: boolean) => SessionSettings); timeoutMs?: number },
): Promise<AuthResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const refuse = (reason: string): never => {
    mux.fail(reason);
    throw new NetError('EAUTH', reason);
  };
  const reader = new HandshakeReader(mux);
  const hello = await reader.next(timeoutMs, 'HELLO');
  if (hello.type !== FrameType.HELLO) {
    mux.protocolError('expected HELLO');
    throw new NetError('EPROTO', 'tunnel handshake: expected HELLO');
  }
  const p = hello.payload;
  for (let i = 0; i < MAGIC.length; i++) if (p[i] !== MAGIC[i]) refuse('not a wmproxy tunnel client');
  const version = p[MAGIC.length]!;
  if (version !== PROTOCOL_VERSION) refuse(`unsupported tunnel protocol version ${version} (this server speaks ${PROTOCOL_VERSION})`);
  if (p.byteLength < MAGIC.length + 1 + NONCE) refuse('HELLO too short');
  const clientNonce = p.slice(MAGIC.length + 1, MAGIC.length + 1 + NONCE);
  const serverNonce = randomBytes(NONCE);
  mux.sendControl(FrameType.CHALLENGE, 0, challengePayload(serverNonce, options.serverId));
  const auth = await reader.next(Math.max(1, deadline - Date.now()), 'AUTH');
  if (auth.type !== FrameType.AUTH) refuse('expected AUTH');
  const proof = auth.payload.subarray(0, MAC);
  const announcedName = safeName(auth.payload.subarray(MAC));
  // Every credential is tried (constant-time each): the token decides, not the announced name.
  let match: ClientCredential | undefined;
  for (const credential of options.credentials) {
    const expected = mac(credential.token, CLIENT_LABEL, clientNonce, serverNonce, options.serverId);
    if (timingSafeEqual(expected, proof)) match = credential;
  }
  if (!match) refuse(WRONG_TOKEN);
  const credential = match!;
  const answer = mac(credential.token, SERVER_LABEL, serverNonce, clientNonce, options.serverId);
  const canMove = (hello.flags & HELLO_CAN_MOVE) !== 0;
  const settings = encodeJson(typeof options.settings === 'function' ? options.settings(canMove) : options.settings);
  const ok = new Uint8Array(MAC + settings.byteLength);
  ok.set(answer, 0);
  ok.set(settings, MAC);
  mux.sendControl(FrameType.AUTH_OK, 0, ok);
  mux.established = true;
  return { credential, announcedName, canMove };
}

/** Client side. Resolves with the server's settings; rejects with EAUTH (the server's reason) or EPROTO. */
export async function clientHandshake(
  mux: Mux,
  options: { token: string; name?: string; timeoutMs?: number; canMove?: boolean },
): Promise<SessionSettings & { serverId: string }> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  const clientNonce = randomBytes(NONCE);
  const name = Buffer.from((options.name ?? '').slice(0, 200));
  const reader = new HandshakeReader(mux);
  mux.sendControl(FrameType.HELLO, 0, helloPayload(clientNonce, name), options.canMove === false ? 0 : HELLO_CAN_MOVE);
  const challenge = await reader.next(timeoutMs, 'CHALLENGE');
  if (challenge.type === FrameType.ERROR) throw refusal(mux, challenge.payload);
  if (challenge.type !== FrameType.CHALLENGE || challenge.payload.byteLength < 1 + NONCE) {
    mux.protocolError('expected CHALLENGE');
    throw new NetError('EPROTO', 'tunnel handshake: the server did not send a challenge (is it a wmproxy tunnel server?)');
  }
  const version = challenge.payload[0]!;
  if (version !== PROTOCOL_VERSION) {
    mux.destroy();
    throw new NetError('EPROTO', `tunnel server speaks protocol version ${version}, this client ${PROTOCOL_VERSION}`);
  }
  const serverNonce = challenge.payload.slice(1, 1 + NONCE);
  const serverId = safeName(challenge.payload.subarray(1 + NONCE));
  const proof = mac(options.token, CLIENT_LABEL, clientNonce, serverNonce, serverId);
  const auth = new Uint8Array(MAC + name.byteLength);
  auth.set(proof, 0);
  auth.set(name, MAC);
  mux.sendControl(FrameType.AUTH, 0, auth);
  const answer = await reader.next(Math.max(1, deadline - Date.now()), 'AUTH_OK');
  if (answer.type === FrameType.ERROR) throw refusal(mux, answer.payload);
  if (answer.type !== FrameType.AUTH_OK || answer.payload.byteLength < MAC) {
    mux.protocolError('expected AUTH_OK');
    throw new NetError('EPROTO', 'tunnel handshake: expected AUTH_OK');
  }
  const expected = mac(options.token, SERVER_LABEL, serverNonce, clientNonce, serverId);
  if (!timingSafeEqual(expected, answer.payload.subarray(0, MAC))) {
    mux.destroy();
    throw new NetError('EAUTH', 'the tunnel server could not prove it knows the token (impostor or wrong token on the server)');
  }
  const settings = decodeJson(answer.payload.subarray(MAC), 'AUTH_OK');
  const heartbeatMs = typeof settings.heartbeatMs === 'number' && settings.heartbeatMs >= 10 ? settings.heartbeatMs : 10_000;
  const sessionId = typeof settings.sessionId === 'string' ? settings.sessionId.slice(0, 64) : '';
  const dataPool = typeof settings.dataPool === 'number' && settings.dataPool > 0 ? Math.min(256, Math.floor(settings.dataPool)) : 0;
  mux.established = true;
  return { heartbeatMs, sessionId, dataPool, serverId };
}

function refusal(mux: Mux, payload: Uint8Array): NetError {
  mux.destroy();
  return new NetError('EAUTH', `tunnel server refused: ${decodeReason(payload)}`);
}

function safeName(bytes: Uint8Array): string {
  // eslint-disable-next-line no-control-regex
  return utf8.decode(bytes).slice(0, 200).replace(/[\u0000-\u001f\u007f]/g, '?');
}

/** Parse `8000-8100,9000` into ranges; throws RangeError on bad input. */
export function parsePortRanges(text: string): PortRange[] {
  const out: PortRange[] = [];
  for (const part of text.split(',')) {
    const item = part.trim();
    if (!item) continue;
    const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(item);
    if (!match) throw new RangeError(`"${item}" is not a port or a range (use 8000 or 8000-8100)`);
    const from = Number(match[1]);
    const to = match[2] === undefined ? from : Number(match[2]);
    if (from < 1 || to > 65535 || from > to) throw new RangeError(`"${item}" is not a valid port range (1-65535, low-high)`);
    out.push({ from, to });
  }
  return out;
}

export function portAllowed(port: number, ranges: readonly PortRange[] | undefined): boolean {
  if (ranges === undefined) return true;
  for (const range of ranges) if (port >= range.from && port <= range.to) return true;
  return false;
}

/** `app.example.com` matches itself; `*.example.com` matches any subdomain; `*` anything. */
export function domainAllowed(domain: string, patterns: readonly string[] | undefined): boolean {
  if (patterns === undefined) return true;
  const name = domain.toLowerCase();
  for (const raw of patterns) {
    const pattern = raw.toLowerCase();
    if (pattern === '*' || pattern === name) return true;
    if (pattern.startsWith('*.') && name.endsWith(pattern.slice(1)) && name.length > pattern.length - 1) return true;
  }
  return false;
}
