import { promises as fsp } from 'node:fs';
import { join } from 'node:path';

export interface ListingEntry {
  name: string;
  isDir: boolean;
  size: number;
  mtimeMs: number;
}

export type SortKey = 'name' | 'size' | 'mtime';

/** Read up to `limit` visible entries of a directory (`visible` filters hidden names). */
export async function readListing(dir: string, limit: number, visible: (name: string) => boolean): Promise<ListingEntry[]> {
  const entries: ListingEntry[] = [];
  const handle = await fsp.opendir(dir, { bufferSize: 64 });
  try {
    const pending: Array<Promise<ListingEntry | undefined>> = [];
    for await (const dirent of handle) {
      if (!visible(dirent.name)) continue;
      pending.push(
        fsp.stat(join(dir, dirent.name)).then(
          (stats) => ({ name: dirent.name, isDir: stats.isDirectory(), size: stats.isDirectory() ? 0 : stats.size, mtimeMs: stats.mtimeMs }),
          () => undefined,
        ),
      );
      if (pending.length >= limit) break;
    }
    for (const entry of await Promise.all(pending)) if (entry) entries.push(entry);
  } finally {
    await handle.close().catch(() => undefined);
  }
  return entries;
}

/** Directories first, then by key; `desc` reverses within each group. */
export function sortListing(entries: ListingEntry[], key: SortKey, desc: boolean): ListingEntry[] {
  const sign = desc ? -1 : 1;
  return entries.sort((a, b) => {
    if (a.isDir !== b.isDir) return a.isDir ? -1 : 1;
    let diff = 0;
    if (key === 'size') diff = a.size - b.size;
    else if (key === 'mtime') diff = a.mtimeMs - b.mtimeMs;
    if (diff === 0) diff = a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    return diff * sign;
  });
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char]!);
}

function formatSize(size: number): string {
  if (size < 1024) return `${size} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = size / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** `base` is the directory's encoded URL path, ending in `/`; `title` its decoded form. */
export function renderHtml(entries: ListingEntry[], base: string, title: string, key: SortKey, desc: boolean): string {
  const link = (name: SortKey, label: string) => {
    const nextDesc = key === name ? !desc : false;
    return `<a href="?sort=${name}&amp;order=${nextDesc ? 'desc' : 'asc'}">${label}</a>`;
  };
  const rows = entries
    .map((entry) => {
      const href = encodeURIComponent(entry.name) + (entry.isDir ? '/' : '');
      const name = escapeHtml(entry.name) + (entry.isDir ? '/' : '');
      const size = entry.isDir ? '-' : formatSize(entry.size);
      const time = new Date(entry.mtimeMs).toISOString().replace('T', ' ').slice(0, 19);
      return `<tr><td><a href="./${escapeHtml(href)}">${name}</a></td><td>${size}</td><td>${time}</td></tr>`;
    })
    .join('\n');
  const heading = escapeHtml(title);
  const parent = base === '/' ? '' : '<tr><td><a href="../">../</a></td><td></td><td></td></tr>\n';
  return `<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Index of ${heading}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em}td{padding:.2em 1.5em .2em 0}th{text-align:left}</style></head>
<body><h1>Index of ${heading}</h1>
<table><thead><tr><th>${link('name', 'Name')}</th><th>${link('size', 'Size')}</th><th>${link('mtime', 'Modified')}</th></tr></thead>
<tbody>
${parent}${rows}
</tbody></table></body></html>
`;
}

export function renderJson(entries: ListingEntry[], base: string): string {
  return JSON.stringify(
    entries.map((entry) => ({
      name: entry.name,
      isDir: entry.isDir,
      size: entry.size,
      mtime: new Date(entry.mtimeMs).toISOString(),
      url: base + encodeURIComponent(entry.name) + (entry.isDir ? '/' : ''),
    })),
  );
}
