import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import { WechatOptionsError } from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import type { KeySpace } from './keys.js'
import { MemoryStore } from './memory.js'
import { RedisStore } from './redis.js'
import type { WechatStore } from './types.js'

/** Redis commands on the token path wait at most this long before the store counts as down. */
const REDIS_COMMAND_TIMEOUT_MS = 1000

/**
 * `store: 'auto'` takes `fastify.redis` (or its `redisNamespace`) when @fastify/redis was registered
 * first, memory otherwise, and says which in one startup log line.
 */
export function selectStore (fastify: FastifyInstance, options: ResolvedOptions, keys: KeySpace, log: FastifyBaseLogger): WechatStore {
  const client = findRedis(fastify, options.redisNamespace)
  if (options.store === 'redis' || (options.store === 'auto' && options.redisNamespace !== undefined)) {
    if (!client) {
      const which = options.redisNamespace ? `fastify.redis['${options.redisNamespace}']` : 'fastify.redis'
      throw new WechatOptionsError(`store: 'redis' needs ${which}: register @fastify/redis${options.redisNamespace ? ` with namespace '${options.redisNamespace}'` : ''} before fastify-wechat-push`)
    }
  }
  if (options.store !== 'memory' && client) {
    log.info({ store: 'redis', keyPrefix: keys.queue }, 'wechat: shared state on Redis (fleet-wide token, lock and records)')
    return new RedisStore(client, keys, options.clock, Math.min(options.timeout, REDIS_COMMAND_TIMEOUT_MS))
  }
  log.info({ store: 'memory' }, 'wechat: state in process memory (single instance; register @fastify/redis first to share it across a fleet)')
  return new MemoryStore(options.clock)
}

function findRedis (fastify: FastifyInstance, namespace: string | undefined): Redis | undefined {
  if (!fastify.hasDecorator('redis')) return undefined
  const redis = (fastify as unknown as { redis: Record<string, unknown> }).redis
  const candidate = namespace === undefined ? redis : redis[namespace]
  return isRedisClient(candidate) ? candidate : undefined
}

function isRedisClient (value: unknown): value is Redis {
  return value !== null && typeof value === 'object' && typeof (value as Redis).defineCommand === 'function' && typeof (value as Redis).get === 'function'
}
