/**
 * Self-signed ECDSA P-256 certificates made in-process (node:crypto signs;
 * the X.509 structure is encoded here in DER): a tunnel server's first start,
 * and a stand-in certificate until ACME issues a real one.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { parseIp } from '../cidr.js';

export interface SelfSignedOptions {
  /** Subject and issuer common name (default the first name, or "wmproxy"). */
  commonName?: string;
  /** DNS names and IP addresses for subjectAltName (default localhost, 127.0.0.1, ::1). */
  altNames?: string[];
  /** Validity in days from now (default 3650). */
  days?: number;
  /** Exact validity (default: from an hour ago to `days` from now). */
  notBefore?: Date;
  notAfter?: Date;
  /** SHA-256 of an ACME key authorization: makes a TLS-ALPN-01 challenge certificate (RFC 8737, critical acmeIdentifier). */
  acmeIdentifier?: Uint8Array;
  /** PEM ECDSA P-256 private key to certify (default a new one). */
  key?: string;
}

export interface SelfSigned {
  /** PEM certificate. */
  cert: string;
  /** PEM PKCS#8 private key. */
  key: string;
  der: Uint8Array;
  /** `SHA256:<base64>` (as ssh prints it) of the DER certificate. */
  fingerprint: string;
}

// ---- DER ---------------------------------------------------------------------

function length(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const size = parts.reduce((n, p) => n + p.byteLength, 0);
  const len = length(size);
  const out = new Uint8Array(1 + len.byteLength + size);
  out[0] = tag;
  out.set(len, 1);
  let at = 1 + len.byteLength;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

const seq = (...parts: Uint8Array[]): Uint8Array => tlv(0x30, ...parts);

function oid(text: string): Uint8Array {
  const arcs = text.split('.').map(Number);
  const bytes: number[] = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    bytes.push(...chunk);
  }
  return tlv(0x06, Uint8Array.from(bytes));
}

/**
 * A DER INTEGER of the unsigned big-endian `bytes`: minimal (leading zero
 * bytes dropped, which DER forbids: OpenSSL and BoringSSL refuse the
 * certificate), and positive (a 0 byte before a leading 1 bit).
 */
export function derPositiveInteger(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const minimal = bytes.subarray(start);
  return tlv(0x02, minimal[0]! & 0x80 ? Uint8Array.of(0, ...minimal) : minimal);
}

function time(date: Date): Uint8Array {
  const iso = date.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  // UTCTime until 2049, GeneralizedTime after (RFC 5280 4.1.2.5).
  return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}

function name(commonName: string): Uint8Array {
  return seq(tlv(0x31, seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from(commonName)))));
}

function ipBytes(ip: string): Uint8Array {
  const parsed = parseIp(ip)!;
  const size = parsed.v6 ? 16 : 4;
  const out = new Uint8Array(size);
  let value = parsed.value;
  for (let i = size - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

/** Make a self-signed ECDSA P-256 certificate and its key. */
export function createSelfSignedCertificate(options: SelfSignedOptions = {}): SelfSigned {
  const altNames = options.altNames && options.altNames.length > 0 ? options.altNames : ['localhost', '127.0.0.1', '::1'];
  const commonName = options.commonName ?? altNames[0] ?? 'wmproxy';
  const days = options.days ?? 3650;
  const privateKey = options.key ? createPrivateKey(options.key) : generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const publicKey = createPublicKey(privateKey);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const notBefore = options.notBefore ?? new Date(Date.now() - 60 * 60 * 1000);
  const notAfter = options.notAfter ?? new Date(Date.now() + days * 24 * 60 * 60 * 1000);
  const sans = altNames.map((entry) => (isIP(entry) ? tlv(0x87, ipBytes(entry)) : tlv(0x82, Buffer.from(entry))));
  const extensions = tlv(
    0xa3,
    seq(
      seq(oid('2.5.29.17'), tlv(0x04, seq(...sans))),
      // extKeyUsage: serverAuth, clientAuth (the same certificate may serve mTLS tests).
      seq(oid('2.5.29.37'), tlv(0x04, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2')))),
      ...(options.acmeIdentifier ? [seq(oid('1.3.6.1.5.5.7.1.31'), tlv(0x01, Uint8Array.of(0xff)), tlv(0x04, tlv(0x04, options.acmeIdentifier)))] : []),
    ),
  );
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Uint8Array.of(2))),
    derPositiveInteger(serial),
    ECDSA_SHA256,
    name(commonName),
    seq(time(notBefore), time(notAfter)),
    name(commonName),
    new Uint8Array(spki),
    extensions,
  );
  const signature = sign('sha256', tbs, privateKey);
  const der = seq(tbs, ECDSA_SHA256, tlv(0x03, Uint8Array.of(0), signature));
  const cert = `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  return { cert, key, der, fingerprint: certificateFingerprint(der) };
}

/** `SHA256:<base64, no padding>` of a certificate (PEM text or DER bytes). */
export function certificateFingerprint(cert: string | Uint8Array): string {
  const der = typeof cert === 'string' ? new X509Certificate(cert).raw : cert;
  return 'SHA256:' + createHash('sha256').update(der).digest('base64').replace(/=+$/, '');
}

/**
 * Normalise a pinned fingerprint as users paste it: `SHA256:<base64>` (ssh),
 * or hex with or without colons (openssl `-fingerprint -sha256`). Returns the
 * `SHA256:<base64>` form; throws RangeError on anything else.
 */
export function normaliseFingerprint(text: string): string {
  const value = text.trim();
  const body = value.replace(/^sha-?256[:=]?/i, '');
  const hex = body.replace(/:/g, '');
  if (/^[0-9a-f]{64}$/i.test(hex)) return 'SHA256:' + Buffer.from(hex, 'hex').toString('base64').replace(/=+$/, '');
  const raw = Buffer.from(body, 'base64');
  if (raw.byteLength === 32 && /^[A-Za-z0-9+/]{43}=?$/.test(body)) return 'SHA256:' + raw.toString('base64').replace(/=+$/, '');
  throw new RangeError(`"${text}" is not a SHA-256 fingerprint (use SHA256:<base64> as printed by the tunnel server, or 64 hex digits)`);
}
