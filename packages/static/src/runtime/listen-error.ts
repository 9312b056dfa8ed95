/**
 * A listen failure in Node's words on both adapters (Bun.serve says "Failed
 * to start server. Is port 8080 in use?"): `listen EADDRINUSE: address
 * already in use 127.0.0.1:8080`, with the system `code` kept.
 */
const REASONS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use',
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'address not available',
};

export function listenError(error: unknown, address: string): Error & { code: string } {
  const raw = (error as { code?: unknown } | null)?.code;
  const code = typeof raw === 'string' ? raw : 'ELISTEN';
  const reason = REASONS[code];
  const message = reason ? `listen ${code}: ${reason} ${address}` : `listen ${address}: ${error instanceof Error ? error.message : String(error)}`;
  return Object.assign(new Error(message, { cause: error }), { code });
}
