/**
 * A listen failure in Node's words on every runtime (Bun says only "Failed to
 * listen at 127.0.0.1"): `listen EADDRINUSE: address already in use
 * 127.0.0.1:8080`, with the system `code` kept for callers that retry.
 */
const REASONS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use',
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'address not available',
};

export interface ListenError extends Error {
  code: string;
  syscall: 'listen';
  address: string;
}

export function listenError(error: unknown, address: string): ListenError {
  const raw = (error as { code?: unknown } | null)?.code;
  const code = typeof raw === 'string' ? raw : 'ELISTEN';
  const reason = REASONS[code];
  const message = reason ? `listen ${code}: ${reason} ${address}` : `listen ${address}: ${error instanceof Error ? error.message : String(error)}`;
  return Object.assign(new Error(message, { cause: error }), { code, syscall: 'listen' as const, address });
}
