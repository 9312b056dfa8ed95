import { test } from 'node:test';
import assert from 'node:assert/strict';
import { numbersIn, packageReadme, readmeTable, tableCell } from '@wmproxy/testkit';
import { STATIC_DEFAULTS } from '../src/index.js';
import { resolveOptions } from '../src/options.js';

const rows = readmeTable(packageReadme(import.meta.url), 'Options');
const cell = (name: string): string => tableCell(rows, name, 2);

test('the README\'s options table states the defaults STATIC_DEFAULTS exports', () => {
  assert.equal(cell('listen'), `\`${STATIC_DEFAULTS.listen}\``);
  assert.equal(cell('index'), `\`${JSON.stringify([...STATIC_DEFAULTS.index]).replace(/"/g, "'")}\``);
  for (const key of ['browse', 'spa', 'precompressed', 'robots'] as const) assert.equal(cell(key), `\`${STATIC_DEFAULTS[key]}\``, key);
  assert.match(cell('followSymlinks'), new RegExp(`^\`${STATIC_DEFAULTS.followSymlinks}\``));
  assert.equal(cell('dotfiles'), `\`${STATIC_DEFAULTS.dotfiles}\``);
  assert.equal(cell('defaultMimeType'), `\`${STATIC_DEFAULTS.defaultMimeType}\``);
  for (const key of ['maxRanges', 'statCacheMs', 'listingLimit', 'workers'] as const) assert.equal(numbersIn(cell(key))[0], STATIC_DEFAULTS[key], key);
  assert.deepEqual(numbersIn(cell('memoryCache')), [STATIC_DEFAULTS.memoryCache.maxFileSize / 1024, STATIC_DEFAULTS.memoryCache.maxBytes / 1024 / 1024], 'memoryCache (KiB / MiB)');
  assert.deepEqual(numbersIn(cell('compress')), [STATIC_DEFAULTS.compress.minSize, STATIC_DEFAULTS.compress.maxSize / 1024 / 1024], 'compress (B – MiB)');
  assert.equal(numbersIn(cell('cors')).at(-1), STATIC_DEFAULTS.corsMaxAge);
});

test('options resolve to STATIC_DEFAULTS', () => {
  const options = resolveOptions({ root: '.', memoryCache: {}, compress: true, cors: true }, true);
  assert.deepEqual(options.index, [...STATIC_DEFAULTS.index]);
  assert.equal(options.browse, STATIC_DEFAULTS.browse);
  assert.equal(options.dotfiles, STATIC_DEFAULTS.dotfiles);
  assert.equal(options.followSymlinks, STATIC_DEFAULTS.followSymlinks);
  assert.equal(options.defaultMimeType, STATIC_DEFAULTS.defaultMimeType);
  assert.equal(options.maxRanges, STATIC_DEFAULTS.maxRanges);
  assert.equal(options.statCacheMs, STATIC_DEFAULTS.statCacheMs);
  assert.equal(options.listingLimit, STATIC_DEFAULTS.listingLimit);
  assert.deepEqual(options.memoryCache, { ...STATIC_DEFAULTS.memoryCache });
  assert.equal(options.compress && options.compress.minSize, STATIC_DEFAULTS.compress.minSize);
  assert.equal(options.compress && options.compress.maxSize, STATIC_DEFAULTS.compress.maxSize);
  assert.equal(options.cors && options.cors.maxAge, STATIC_DEFAULTS.corsMaxAge);
});
