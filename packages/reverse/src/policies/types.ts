import type { BalancedGroup, BalancedServer } from '../types.js';

/** What a policy may look at to choose a server for one request. */
export interface SelectContext {
  clientIp: string;
  /** Request target (path and query). */
  uri: string;
  /** A request header by lower-case name. */
  header(lower: string): string | undefined;
}

/**
 * A load-balancing policy: choose one of `pool` (never empty; already
 * filtered to available servers under their max_conns) for a request.
 */
export interface Policy {
  readonly name: string;
  select<S extends BalancedServer>(pool: readonly S[], ctx: SelectContext, group: BalancedGroup<S>): S;
  /** A fresh instance for one group, for policies that keep state between picks (each group owns its own). */
  create?(): Policy;
}

/** 32-bit FNV-1a. */
export function fnv1a(text: string, seed = 0x811c9dc5): number {
  let hash = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** A 32-bit finaliser (murmur3 fmix32) so that nearby inputs spread. */
export function mix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Weighted rendezvous (highest random weight) hashing: each server scores
 * `-weight / ln(u)` for a per-(key, server) uniform `u`; the highest wins.
 * Removing a server moves only the keys it owned.
 */
export function rendezvous<S extends BalancedServer>(pool: readonly S[], key: string, group: BalancedGroup<S>): S {
  const keyHash = fnv1a(key);
  let best = pool[0]!;
  let bestScore = -Infinity;
  for (const server of pool) {
    const h = mix32(keyHash ^ fnv1a(server.address));
    const u = (h + 1) / 4294967297; // (0, 1)
    const score = -group.effectiveWeight(server) / Math.log(u);
    if (score > bestScore) {
      bestScore = score;
      best = server;
    }
  }
  return best;
}

/** The value of one cookie in a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
