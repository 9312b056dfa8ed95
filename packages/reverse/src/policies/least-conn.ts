import type { BalancedGroup, BalancedServer } from '../types.js';
import type { Policy, SelectContext } from './types.js';

/**
 * Least connections, weighted (nginx `least_conn`, HAProxy `leastconn`): the
 * server with the fewest requests in flight per unit of weight; ties are
 * broken round robin (a cursor per group, see `create`) so that an idle
 * pool is still spread.
 */
class LeastConn implements Policy {
  readonly name = 'least_conn';
  private cursor = 0;

  create(): Policy {
    return new LeastConn();
  }

  select<S extends BalancedServer>(pool: readonly S[], _ctx: SelectContext, group: BalancedGroup<S>): S {
    let best = pool[0]!;
    let bestLoad = Infinity;
    const start = this.cursor++ % pool.length;
    for (let n = 0; n < pool.length; n++) {
      const server = pool[(start + n) % pool.length]!;
      const load = server.active / group.effectiveWeight(server);
      if (load < bestLoad) {
        bestLoad = load;
        best = server;
      }
    }
    return best;
  }
}

export const leastConn: Policy = new LeastConn();
