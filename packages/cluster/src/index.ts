/**
 * @wmproxy/cluster: many wmproxy instances sharing one configuration through
 * etcd (push with compare-and-swap, watch, member registry under leases).
 */
export { ConfigStore, StoreError, parseStoreUrl, DEFAULT_STORE_TIMEOUT_MS, DEFAULT_MEMBER_TTL_S, type StoreUrl, type StoredConfig, type StoredFormat, type MemberRecord, type StoreOptions } from './store.js';
export { ClusterMember, DEFAULT_MEMBER_REFRESH_MS, type FollowingInstance, type MemberOptions, type MemberView } from './member.js';
export { RedisCounters, DEFAULT_REDIS_TIMEOUT_MS, type RedisCountersOptions } from './redis-counters.js';
export { ServiceRegistry, servicePrefix, parseServiceRecord, DEFAULT_SERVICE_TTL_S, type ServiceRecord, type RegistryOptions } from './registry.js';
