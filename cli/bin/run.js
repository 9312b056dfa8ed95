#!/usr/bin/env node
// The wmproxy CLI entry. Bun runs the TypeScript sources directly (the
// command table in src/, and every package through its "bun" export
// condition); Node runs the compiled dist/ that `npm install` builds.
import { readFileSync } from 'node:fs';
import { execute } from '@oclif/core';

const onBun = typeof globalThis.Bun !== 'undefined';
// oclif maps dist/ to src/ by itself when NODE_ENV is test or development.
const oclifMapsSources = process.env.NODE_ENV === 'test' || process.env.NODE_ENV === 'development';
let loadOptions;
if (onBun && !oclifMapsSources) {
  const root = new URL('..', import.meta.url);
  const pjson = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));
  pjson.oclif.commands.target = './src/commands.ts';
  loadOptions = { root: root.pathname, pjson };
}

await execute({ dir: import.meta.url, loadOptions });
