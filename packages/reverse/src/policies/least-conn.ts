import type { Policy } from './types.js';

/**
 * Least connections, weighted (nginx `least_conn`, HAProxy `leastconn`): the
 * server with the fewest requests in flight per unit of weight; ties are
 * broken round robin so that an idle pool is still spread.
 */
export const leastConn: Policy = {
  name: 'least_conn',
  select(pool, _ctx, group) {
    let best = pool[0]!;
    let bestLoad = Infinity;
    const start = group.cursor++ % pool.length;
    for (let n = 0; n < pool.length; n++) {
      const server = pool[(start + n) % pool.length]!;
      const load = server.active / group.effectiveWeight(server);
      if (load < bestLoad) {
        bestLoad = load;
        best = server;
      }
    }
    return best;
  },
};
