import { rendezvous, type Policy } from './types.js';

/**
 * Client IP affinity (nginx `ip_hash`, HAProxy `balance source`), by
 * rendezvous hashing: a client keeps its server while that server is
 * available, and only the clients of a server that leaves are moved.
 */
export const ipHash: Policy = {
  name: 'ip_hash',
  select(pool, ctx, group) {
    return rendezvous(pool, ctx.clientIp, group);
  },
};
