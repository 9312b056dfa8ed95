import type { Policy } from './types.js';

/**
 * First available (HAProxy `balance first`, Caddy `first`): the first server
 * in configuration order that is available and under its max_conns, so that
 * the others can stay idle or be spun down.
 */
export const first: Policy = {
  name: 'first',
  select(pool) {
    return pool[0]!;
  },
};
