import type { Policy } from './types.js';
import { roundRobin } from './round-robin.js';
import { leastConn } from './least-conn.js';
import { randomTwo } from './random-two.js';
import { ipHash } from './ip-hash.js';
import { hash } from './hash.js';
import { first } from './first.js';

export type { Policy, SelectContext } from './types.js';
export { roundRobin, leastConn, randomTwo, ipHash, hash, first };

export const POLICIES = {
  round_robin: roundRobin,
  least_conn: leastConn,
  random_two: randomTwo,
  ip_hash: ipHash,
  hash,
  first,
} as const satisfies Record<string, Policy>;

export type PolicyName = keyof typeof POLICIES;

export const POLICY_NAMES = Object.keys(POLICIES) as PolicyName[];

export function getPolicy(name: string): Policy {
  const policy = (POLICIES as Record<string, Policy>)[name];
  if (!policy) throw new Error(`unknown load-balancing policy "${name}" (expected one of ${POLICY_NAMES.join(', ')})`);
  return policy;
}
