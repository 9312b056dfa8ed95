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
// Its young generation also stays at its initial size (V8 otherwise grows it
// to 32 MiB during start-up and bulk transfer, and every page garbage walks
// through stays resident: 1,000 idle streams showed 13-24 KiB of RSS each, of
// which the streams hold ~3 KiB). With incremental marking on, the smaller
// young generation meant more scavenges and so more full GCs (-13 % download);
// without it, same-run throughput and req/s are level.
if (!onBun && process.argv[2] === 'tunnel') {
  setFlagsFromString('--no-incremental-marking');
  setFlagsFromString('--semi-space-growth-factor=1');
}
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
