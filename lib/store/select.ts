import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import { WechatOptionsError } from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import type { KeySpace } from './keys.js'
import { MemoryStore } from './memory.js'
import { watchClientErrors } from './client-errors.js'
import { RedisStore } from './redis.js'
import type { WechatStore } from './types.js'

/** Redis commands on the token path wait at most this long before the store counts as down. */
const REDIS_COMMAND_TIMEOUT_MS = 1000

/**
 * `store: 'auto'` takes `fastify.redis` (or its `redisNamespace`) when @fastify/redis was registered
 * first, memory otherwise, and says which in one startup log line. A `redis` decorator that is there
 * but holds no usable client (namespaces only, no `redisNamespace`) fails registration: falling back
 * to memory would silently give a fleet per-process tokens and a non-durable queue.
 */
export function selectStore (fastify: FastifyInstance, options: ResolvedOptions, keys: KeySpace, log: FastifyBaseLogger): WechatStore {
  const client = options.store === 'memory' ? undefined : findRedis(fastify, options.redisNamespace)
  if (options.store === 'redis' && !client) {
    throw new WechatOptionsError("store: 'redis' needs fastify.redis: register @fastify/redis before fastify-wechat-push")
  }
  if (client) {
    // Reads from replicas lag the writes: status() right after a send, a receipt's msgid lookup and
    // the token read after the lock would miss what this process just wrote.
    const scaleReads = (client as { isCluster?: boolean, options?: { scaleReads?: unknown } }).isCluster === true ? (client as { options?: { scaleReads?: unknown } }).options?.scaleReads : undefined
    if (scaleReads !== undefined && scaleReads !== 'master') {
      throw new WechatOptionsError(`the Redis Cluster client reads from replicas (scaleReads: ${typeof scaleReads === 'string' ? `'${scaleReads}'` : 'a function'}): the plugin needs its reads from the masters; give it a client with scaleReads: 'master' (@fastify/redis namespace and redisNamespace)`)
    }
    // The same for a Sentinel client asking for a replica: every write failed READONLY (audit)
    const sentinel = (client as { options?: { sentinels?: unknown, role?: unknown } }).options
    if (sentinel?.sentinels != null && sentinel.role === 'slave') {
      throw new WechatOptionsError("the Redis Sentinel client connects to a replica (role: 'slave'): the plugin writes and needs its reads from the master; give it a client with role: 'master' (@fastify/redis namespace and redisNamespace)")
    }
    log.info({ store: 'redis', keyPrefix: keys.queue }, 'wechat: shared state on Redis (fleet-wide token, lock and records)')
    watchClientErrors(fastify, client, log)
    return new RedisStore(client, keys, options.clock, Math.min(options.timeout, REDIS_COMMAND_TIMEOUT_MS))
  }
  log.info({ store: 'memory' }, 'wechat: state in process memory (single instance; register @fastify/redis first to share it across a fleet)')
  return new MemoryStore(options.clock)
}

/**
 * The client to use, or undefined when no `redis` decorator exists. A decorator that exists but
 * gives no client for the options is an error, never a reason to fall back to memory.
 */
function findRedis (fastify: FastifyInstance, namespace: string | undefined): Redis | undefined {
  if (!fastify.hasDecorator('redis')) {
    if (namespace === undefined) return undefined
    throw new WechatOptionsError(`redisNamespace '${namespace}' needs fastify.redis['${namespace}']: register @fastify/redis with namespace '${namespace}' before fastify-wechat-push`)
  }
  const redis: unknown = (fastify as unknown as { redis: unknown }).redis
  if (namespace === undefined) {
    if (isRedisClient(redis)) return redis
    throw new WechatOptionsError(`fastify.redis is not a Redis client (${namespacesOf(redis)}): set redisNamespace to the namespace to use, or store: 'memory' to keep the state in process memory`)
  }
  const candidate = isObject(redis) && Object.hasOwn(redis, namespace) ? redis[namespace] : undefined
  if (isRedisClient(candidate)) return candidate
  throw new WechatOptionsError(`redisNamespace '${namespace}' needs fastify.redis['${namespace}'] (${namespacesOf(redis)}): register @fastify/redis with namespace '${namespace}' before fastify-wechat-push`)
}

/** Which @fastify/redis namespaces `fastify.redis` holds, for an error message. */
function namespacesOf (redis: unknown): string {
  const names = isObject(redis) ? Object.keys(redis).filter((name) => isRedisClient(redis[name])) : []
  return names.length > 0 ? `@fastify/redis namespaces registered: ${names.map((name) => `'${name}'`).join(', ')}` : 'no @fastify/redis namespace is registered'
}

function isObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object'
}

function isRedisClient (value: unknown): value is Redis {
  return value !== null && typeof value === 'object' && typeof (value as Redis).defineCommand === 'function' && typeof (value as Redis).get === 'function'
}
