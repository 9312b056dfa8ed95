import { cookieValue, rendezvous, type Policy, type SelectContext } from './types.js';

/**
 * Consistent hashing on a request key (nginx `hash ... consistent`, HAProxy
 * `balance hdr()/uri`, Envoy ring hash / Maglev, Caddy `header`/`cookie`/`uri_hash`)
 * by weighted rendezvous hashing. The key is the group's `hashKey`:
 * `header:NAME`, `cookie:NAME`, `uri` (path and query), `path` or `ip`.
 * A request without the header or cookie falls back to the client IP.
 */
export const hash: Policy = {
  name: 'hash',
  select(pool, ctx, group) {
    return rendezvous(pool, hashKeyOf(group.hashKey, ctx), group);
  },
};

export function hashKeyOf(spec: string, ctx: SelectContext): string {
  if (spec === 'uri') return ctx.uri;
  if (spec === 'path') {
    const q = ctx.uri.indexOf('?');
    return q < 0 ? ctx.uri : ctx.uri.slice(0, q);
  }
  if (spec === 'ip') return ctx.clientIp;
  if (spec.startsWith('header:')) return ctx.header(spec.slice(7).toLowerCase()) ?? ctx.clientIp;
  if (spec.startsWith('cookie:')) return cookieValue(ctx.header('cookie'), spec.slice(7)) ?? ctx.clientIp;
  return ctx.uri;
}
