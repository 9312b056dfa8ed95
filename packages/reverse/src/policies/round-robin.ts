import type { Policy } from './types.js';

/**
 * Smooth weighted round robin (nginx's `ngx_http_upstream_get_peer`): every
 * pick adds each server's weight to its current weight, takes the largest and
 * subtracts the total from it. Weights 5,1,1 give a a b a c a a, not a a a a a b c.
 */
export const roundRobin: Policy = {
  name: 'round_robin',
  select(pool, _ctx, group) {
    let total = 0;
    let best = pool[0]!;
    let bestWeight = -Infinity;
    for (const server of pool) {
      const weight = group.effectiveWeight(server);
      server.currentWeight += weight;
      total += weight;
      if (server.currentWeight > bestWeight) {
        bestWeight = server.currentWeight;
        best = server;
      }
    }
    best.currentWeight -= total;
    return best;
  },
};
