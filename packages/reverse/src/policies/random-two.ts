import type { Policy } from './types.js';

/**
 * Power of two random choices (nginx `random two least_conn`, Envoy
 * `LEAST_REQUEST`): draw two distinct servers at random, weighted, and keep
 * the one with fewer requests in flight per unit of weight.
 */
export const randomTwo: Policy = {
  name: 'random_two',
  select(pool, _ctx, group) {
    let total = 0;
    for (const server of pool) total += group.effectiveWeight(server);
    const first = draw(pool, total, group, undefined);
    const second = draw(pool, total - group.effectiveWeight(first), group, first);
    const loadA = first.active / group.effectiveWeight(first);
    const loadB = second.active / group.effectiveWeight(second);
    return loadB < loadA ? second : first;
  },
};

function draw<T extends { active: number }>(pool: readonly T[], total: number, group: { effectiveWeight(s: T): number }, skip: T | undefined): T {
  let point = Math.random() * total;
  let last = pool[0]!;
  for (const server of pool) {
    if (server === skip) continue;
    last = server;
    point -= group.effectiveWeight(server);
    if (point < 0) return server;
  }
  return last;
}
