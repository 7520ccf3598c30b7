import type { Cluster, Redis } from 'ioredis'

export interface ConnectionOverrides {
  /** BullMQ's blocking worker connection needs `null` */
  maxRetriesPerRequest?: null
  enableOfflineQueue: boolean
}

/**
 * A new connection to the same Redis as `client`, with `overrides`, for a part that needs its own
 * (BullMQ). `Redis#duplicate(options)` takes the options at the top level, but
 * `Cluster#duplicate(startupNodes, options)` wants per-node options under `redisOptions` and takes
 * its first argument as startup nodes: an options object passed there is silently ignored, so the
 * duplicate would keep the app's `maxRetriesPerRequest` and BullMQ's Worker would refuse it.
 * A Sentinel-managed client is a `Redis` and duplicates with its sentinels.
 */
export function duplicateClient (client: Redis, overrides: ConnectionOverrides): Redis {
  if (!client.isCluster) return client.duplicate(overrides)
  const { enableOfflineQueue, ...redisOptions } = overrides
  return (client as unknown as Cluster).duplicate([], { enableOfflineQueue, redisOptions }) as unknown as Redis
}

/**
 * ioredis' own `keyPrefix` of a client (a Cluster's is under `redisOptions`), '' when none: ioredis
 * writes it before every key of a command, which BullMQ refuses and which queued commands carry.
 */
export function clientKeyPrefix (client: unknown): string {
  const options = (client as { options?: { keyPrefix?: unknown, redisOptions?: { keyPrefix?: unknown } } }).options
  const prefix = options?.keyPrefix ?? options?.redisOptions?.keyPrefix
  return typeof prefix === 'string' ? prefix : ''
}
