#!/usr/bin/env node
// The wmproxy CLI entry. On Bun, oclif maps dist/ back to the TypeScript
// sources (Bun runs them directly); on Node it loads the compiled dist/.
import { execute } from '@oclif/core';

await execute({ dir: import.meta.url });
