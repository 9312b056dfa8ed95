import db from 'mime-db';

/**
 * Extension → MIME type from `mime-db` (the table behind `mime-types`, `send`
 * and Express). Conflicts are settled with `mime-types` 3's score: standard
 * trees over `vnd.`/`x-`, IANA over Apache over nginx, then media types over
 * `application/`, so `.mp4` is `video/mp4` and `.js` is `text/javascript`.
 */
interface MimeInfo {
  type: string;
  /** The full Content-Type value, with `; charset=utf-8` for text types. */
  contentType: string;
  compressible: boolean;
}

const FACET_SCORES: Record<string, number> = { 'prs.': 100, 'x-': 200, 'x.': 300, 'vnd.': 400 };
const SOURCE_SCORES: Record<string, number> = { nginx: 10, apache: 20, iana: 40 };
const TYPE_SCORES: Record<string, number> = { application: 1, font: 2 };

function mimeScore(type: string, source: string | undefined): number {
  if (type === 'application/octet-stream') return 0;
  const [top, subtype = ''] = type.split('/');
  const facet = /^(prs\.|x-|x\.|vnd\.)/.exec(subtype)?.[1] ?? '';
  return (FACET_SCORES[facet] ?? 900) + (SOURCE_SCORES[source ?? ''] ?? 30) + (TYPE_SCORES[top!] ?? 3) + (1 - type.length / 100);
}

const byExtension = new Map<string, MimeInfo & { score: number }>();

function isTextual(type: string, charset: string | undefined): boolean {
  return type.startsWith('text/') || charset?.toUpperCase() === 'UTF-8';
}

for (const [type, entry] of Object.entries(db)) {
  if (!entry.extensions) continue;
  const score = mimeScore(type, entry.source);
  for (const extension of entry.extensions) {
    const existing = byExtension.get(extension);
    if (existing && existing.score >= score) continue;
    byExtension.set(extension, {
      type,
      contentType: isTextual(type, entry.charset) ? `${type}; charset=utf-8` : type,
      compressible: entry.compressible ?? (type.startsWith('text/') || type.endsWith('+json') || type.endsWith('+xml')),
      score,
    });
  }
}

const FALLBACK: MimeInfo = { type: 'application/octet-stream', contentType: 'application/octet-stream', compressible: false };

export class MimeTable {
  private readonly overrides = new Map<string, MimeInfo>();

  /** `overrides`: extension (without dot) or exact file name → Content-Type value, used verbatim. */
  constructor(overrides: Record<string, string> = {}, private readonly fallback: MimeInfo = FALLBACK) {
    for (const [key, value] of Object.entries(overrides)) {
      const base = value.split(';')[0]!.trim().toLowerCase();
      this.overrides.set(key.replace(/^\./, '').toLowerCase(), {
        type: base,
        contentType: value,
        compressible: db[base]?.compressible ?? base.startsWith('text/'),
      });
    }
  }

  lookup(fileName: string): MimeInfo {
    const lower = fileName.toLowerCase();
    const dot = lower.lastIndexOf('.');
    if (this.overrides.size > 0) {
      const exact = this.overrides.get(lower) ?? (dot >= 0 ? this.overrides.get(lower.slice(dot + 1)) : undefined);
      if (exact) return exact;
    }
    if (dot < 0) return this.fallback;
    return byExtension.get(lower.slice(dot + 1)) ?? this.fallback;
  }
}

export type { MimeInfo };
