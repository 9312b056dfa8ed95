import type { BalancedGroup, BalancedServer } from '../types.js';
import type { Policy, SelectContext } from './types.js';

/**
 * Smooth weighted round robin (nginx's `ngx_http_upstream_get_peer`): every
 * pick adds each server's weight to its current weight, takes the largest and
 * subtracts the total from it. Weights 5,1,1 give a a b a c a a, not a a a a a b c.
 * The current weights are the policy instance's (one per group, see `create`).
 */
class RoundRobin implements Policy {
  readonly name = 'round_robin';
  /** Each server's slot in `current`, assigned on first sight (a reload builds a new instance). */
  private readonly slots = new Map<BalancedServer, number>();
  private current = new Float64Array(4);

  create(): Policy {
    return new RoundRobin();
  }

  select<S extends BalancedServer>(pool: readonly S[], _ctx: SelectContext, group: BalancedGroup<S>): S {
    let total = 0;
    let best = pool[0]!;
    let bestSlot = 0;
    let bestWeight = -Infinity;
    for (const server of pool) {
      const slot = this.slotOf(server);
      const weight = group.effectiveWeight(server);
      const value = (this.current[slot]! += weight);
      total += weight;
      if (value > bestWeight) {
        bestWeight = value;
        best = server;
        bestSlot = slot;
      }
    }
    this.current[bestSlot]! -= total;
    return best;
  }

  private slotOf(server: BalancedServer): number {
    let slot = this.slots.get(server);
    if (slot === undefined) {
      slot = this.slots.size;
      this.slots.set(server, slot);
      if (slot >= this.current.length) {
        const grown = new Float64Array(this.current.length * 2);
        grown.set(this.current);
        this.current = grown;
      }
    }
    return slot;
  }
}

export const roundRobin: Policy = new RoundRobin();
