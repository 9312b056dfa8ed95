import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The README of the package a test file belongs to: found from the test's
 * `import.meta.url`, whether it runs from sources (Bun) or dist/test (Node).
 */
export function packageReadme(testUrl: string): string {
  let dir = fileURLToPath(new URL('.', testUrl));
  while (!readdirSync(dir).includes('README.md')) dir = join(dir, '..');
  return readFileSync(join(dir, 'README.md'), 'utf8');
}

/**
 * Rows of the first table under the heading that starts with `heading` (any
 * level), keyed by the first cell's first backticked name, as trimmed cells.
 */
export function readmeTable(readme: string, heading: string): Map<string, string[]> {
  const lines = readme.split('\n');
  const start = lines.findIndex((line) => /^#+ /.test(line) && line.replace(/^#+ /, '').startsWith(heading));
  if (start < 0) throw new Error(`README has no "${heading}" section`);
  const rows = new Map<string, string[]>();
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('#')) break;
    if (!line.startsWith('| `')) continue;
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((cell) => cell.trim());
    rows.set(/^`([^`]+)`/.exec(cells[0]!)![1]!, cells);
  }
  return rows;
}

/** The numbers a cell states, digit groups (`60 000`) joined. */
export function numbersIn(cell: string): number[] {
  return [...cell.replace(/(\d) (?=\d{3}\b)/g, '$1').matchAll(/\d+(\.\d+)?/g)].map((match) => Number(match[0]));
}

/** The cell in `column` of the row named `name` (an assertion error when the README has no such row). */
export function tableCell(rows: Map<string, string[]>, name: string, column: number): string {
  const row = rows.get(name);
  if (row === undefined) throw new assert.AssertionError({ message: `README table row for ${name}` });
  return row[column] ?? '';
}
