/**
 * Accept-Encoding negotiation (RFC 9110 section 12.5.3). Pure functions.
 */
export type Coding = 'br' | 'zstd' | 'gzip';

/** Server preference when q-values tie. */
export const CODINGS: readonly Coding[] = ['br', 'zstd', 'gzip'];
/** File suffix of a precompressed sibling. */
export const SIBLING_SUFFIX: Record<Coding, string> = { br: '.br', zstd: '.zst', gzip: '.gz' };

/** q-value per coding the client named (lowercase), `*` included. */
export function parseAcceptEncoding(header: string): Map<string, number> {
  const result = new Map<string, number>();
  for (const item of header.split(',')) {
    const [name, ...params] = item.split(';');
    const coding = name!.trim().toLowerCase();
    if (coding === '') continue;
    let q = 1;
    for (const param of params) {
      const [key, value] = param.split('=');
      if (key!.trim().toLowerCase() === 'q') {
        const parsed = Number(value?.trim());
        q = Number.isFinite(parsed) ? Math.min(Math.max(parsed, 0), 1) : 0;
      }
    }
    result.set(coding === 'x-gzip' ? 'gzip' : coding, q);
  }
  return result;
}

/** The q-value the client gives a coding (explicit, else `*`, else 0). */
export function qualityOf(accepted: Map<string, number>, coding: Coding): number {
  return accepted.get(coding) ?? accepted.get('*') ?? 0;
}

/** Codings from `candidates` the client accepts, best first (q, then server order). */
export function rankCodings(header: string | undefined, candidates: readonly Coding[]): Coding[] {
  if (!header) return [];
  const accepted = parseAcceptEncoding(header);
  return candidates
    .map((coding, order) => ({ coding, order, q: qualityOf(accepted, coding) }))
    .filter((entry) => entry.q > 0)
    .sort((a, b) => b.q - a.q || a.order - b.order)
    .map((entry) => entry.coding);
}
