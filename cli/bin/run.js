#!/usr/bin/env node
// The wmproxy CLI entry. Bun runs the TypeScript sources directly (the
// command table in src/, and every package through its "bun" export
// condition); Node runs the compiled dist/ that `npm install` builds.
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { execute } from '@oclif/core';

const onBun = typeof globalThis.Bun !== 'undefined';
// A tunnel process on Node runs without incremental marking. Node allocates a
// fresh ArrayBuffer per socket read, and V8 11 (Node 20) counts every
// ArrayBuffer byte allocated since the last mark-compact against the old
// generation's limit (live size + 8 MiB): bulk transfer piles up ~32 MiB of
// young read buffers between the scavenges that free them, so each scavenge
// cycle started a concurrent marking and a full GC (25-45 per GiB per
// process) that freed nothing a scavenge would not. Without incremental
// marking, full GCs come only when the old generation itself fills (or
// external memory grows 64 MiB past the last one). Set before anything runs.
if (!onBun && process.argv[2] === 'tunnel') setFlagsFromString('--no-incremental-marking');
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
