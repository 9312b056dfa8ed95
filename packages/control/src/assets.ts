/**
 * uPlot, the dashboard's chart library, served by the control API from the
 * installed package (no CDN: the machine may be offline). Read once, on the
 * first request, and kept.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const ASSETS: Record<string, { file: string; type: string }> = {
  '/assets/uplot.js': { file: 'uplot/dist/uPlot.iife.min.js', type: 'text/javascript; charset=utf-8' },
  '/assets/uplot.css': { file: 'uplot/dist/uPlot.min.css', type: 'text/css; charset=utf-8' },
};

const cache = new Map<string, Promise<Uint8Array>>();

/** The asset at `path` (one of ASSETS), or undefined when uplot is not installed. */
export async function asset(path: string): Promise<Response | undefined> {
  const entry = ASSETS[path];
  if (!entry) return undefined;
  let body = cache.get(path);
  if (!body) {
    body = readFile(require.resolve(entry.file));
    cache.set(path, body);
  }
  try {
    return new Response(await body, { headers: { 'content-type': entry.type, 'cache-control': 'max-age=3600' } });
  } catch {
    cache.delete(path);
    return undefined;
  }
}
