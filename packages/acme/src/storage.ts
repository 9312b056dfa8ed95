/**
 * The storage directory: `certificates/<id>/{cert.pem,key.pem}`,
 * `accounts/<ca>/account.key`, `locks/<id>.lock`, `challenges/<token>`.
 * Keys and certificates are written atomically with mode 0600; the directory
 * itself is 0700. Several workers and instances may share it (see lock.ts).
 */
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createExclusive, readOptional, writeFileAtomic } from './files.js';

export interface StoredCertificate {
  cert: string;
  key: string;
  notBefore: Date;
  notAfter: Date;
  issuer: string;
  /** DNS names of subjectAltName, lower-cased. */
  names: string[];
}

/** A file-system-safe id of a set of names: readable, and unique per set. */
export function certificateId(names: readonly string[]): string {
  const first = names[0]!.replace(/^\*\./, 'wildcard.').replace(/[^a-z0-9.-]/gi, '_');
  if (names.length === 1) return first;
  return `${first}+${createHash('sha256').update([...names].sort().join(',')).digest('hex').slice(0, 10)}`;
}

/** Read what a PEM chain says about its leaf. Throws on text that is not a certificate. */
export function describeCertificate(cert: string, key: string): StoredCertificate {
  const leaf = new X509Certificate(cert);
  const names = (leaf.subjectAltName ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase());
  return { cert, key, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo), issuer: leaf.issuer.replace(/\n/g, ', '), names };
}

export function newPrivateKey(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

export class CertificateStorage {
  constructor(readonly directory: string) {}

  async init(): Promise<void> {
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
  }

  path(...parts: string[]): string {
    return join(this.directory, ...parts);
  }

  /** The stored certificate of these names, if both files are there and parse. */
  async load(names: readonly string[]): Promise<StoredCertificate | undefined> {
    const id = certificateId(names);
    const [cert, key] = await Promise.all([readOptional(this.path('certificates', id, 'cert.pem')), readOptional(this.path('certificates', id, 'key.pem'))]);
    if (cert === undefined || key === undefined) return undefined;
    try {
      return describeCertificate(cert, key);
    } catch {
      return undefined;
    }
  }

  /** Key first, then the certificate: a reader that sees the new certificate also sees its key. */
  async save(names: readonly string[], cert: string, key: string): Promise<StoredCertificate> {
    const stored = describeCertificate(cert, key);
    const id = certificateId(names);
    await writeFileAtomic(this.path('certificates', id, 'key.pem'), key);
    await writeFileAtomic(this.path('certificates', id, 'cert.pem'), cert);
    return stored;
  }

  /** The account key for one CA, made on first use. */
  async accountKey(ca: string): Promise<string> {
    const file = this.path('accounts', ca.replace(/^https?:\/\//, '').replace(/[^a-z0-9.-]/gi, '_'), 'account.key');
    const existing = await readOptional(file);
    if (existing) return existing;
    // Workers starting together: the first key written is everyone's (one account).
    const key = newPrivateKey();
    if (await createExclusive(file, key)) return key;
    return (await readOptional(file)) ?? key;
  }
}
