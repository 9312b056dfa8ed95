import type { TargetSpec } from '@wmproxy/health';
import type { WmproxyConfig } from './types.js';

/**
 * Every health target a configuration defines: one per upstream server, with
 * its upstream's check and timing, in the pool `@wmproxy/reverse` uses (the
 * upstream's name, `NAME#backup` for backups). The same address and check in
 * several upstreams is one probe in a HealthChecker (it deduplicates).
 * For `HealthChecker.replaceTargets` on reload, and `wmproxy probe -c`.
 */
export function upstreamTargets(config: Pick<WmproxyConfig, 'upstreams'>): TargetSpec[] {
  const targets: TargetSpec[] = [];
  for (const group of config.upstreams) {
    for (const server of group.servers) {
      targets.push({ ...group.health, address: server.address, pool: server.backup ? `${group.name}#backup` : group.name });
    }
  }
  return targets;
}
