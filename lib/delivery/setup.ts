import type { FastifyBaseLogger } from 'fastify'
import { WechatOptionsError } from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import { RedisStore } from '../store/redis.js'
import type { WechatStore } from '../store/types.js'
import { clientKeyPrefix } from '../store/connection.js'
import type { KeySpace } from '../store/keys.js'
import { BullQueue } from './bullmq-queue.js'
import { JobRunner } from './job-runner.js'
import type { RunnerHooks } from './job-runner.js'
import { MemoryQueue } from './memory-queue.js'
import type { MessageQueue } from './queue.js'
import type { Sender } from './sender.js'

/**
 * `queue` option → the queue: BullMQ on the app's Redis when there is one (durable, fleet-wide),
 * the in-process queue otherwise (same API, not durable), none with `queue: false`. One startup log
 * line says which.
 */
export function createQueue (options: ResolvedOptions, store: WechatStore, keys: KeySpace, sender: Sender, log: FastifyBaseLogger, hooks: RunnerHooks): MessageQueue | null {
  const queue = options.queue
  if (queue === false) {
    log.info({ queue: 'off' }, 'wechat: queue off (queue: false): enqueue() and reply.wechatPush() are unavailable')
    return null
  }
  const runner = new JobRunner(sender, store, { retry: options.retry, retentionSeconds: options.retentionSeconds, clock: options.clock }, log, hooks)
  if (store instanceof RedisStore && queue.durable !== false) {
    // WAIT has no key: ioredis' Cluster client sends it to any master, which answers for its own
    // writes, not for the master that took the jobs: it would confirm adds nothing replicated.
    if (queue.replicas !== undefined && (store.redis as { isCluster?: boolean }).isCluster === true) {
      throw new WechatOptionsError('queue.replicas needs a single Redis or Sentinel: on Redis Cluster WAIT cannot be sent to the master that holds the jobs (use min-replicas-to-write on the servers instead)')
    }
    // BullMQ refuses a client with ioredis' own keyPrefix, with an error that names neither option.
    const clientPrefix = clientKeyPrefix(store.redis)
    if (clientPrefix !== '') {
      throw new WechatOptionsError(`the Redis client has ioredis' keyPrefix ${JSON.stringify(clientPrefix)}, which BullMQ (the durable queue) cannot work with: drop it from the client and set this plugin's keyPrefix option instead (every key of ours goes under it), or use queue: { durable: false }`)
    }
    log.info({ queue: 'bullmq', concurrency: queue.concurrency, limiter: queue.limiter }, 'wechat: durable queue (BullMQ) on Redis, worked by every instance')
    return new BullQueue(store.redis, runner, { prefix: keys.queue, concurrency: queue.concurrency, attempts: queue.attempts, limiter: queue.limiter, replicas: queue.replicas, pauseEvents: { adopted: hooks.onQuotaAdopted, resumed: hooks.onQuotaResumed } }, log)
  }
  // (the hint names what keeps this queue in process: a memory store, or queue.durable: false on Redis)
  const why = store instanceof RedisStore ? 'queue.durable: false; leave it out for the durable queue on Redis' : 'register @fastify/redis (with the default store) for a durable queue'
  log.info({ queue: 'memory', concurrency: queue.concurrency }, `wechat: in-process queue (not durable: messages waiting when the process stops are lost; ${why})`)
  // (a config shared with a Redis deployment may carry these: said, not refused)
  if (queue.durable === true) log.warn({ durable: true }, 'wechat: queue.durable: true, but there is no Redis store: the queue is in process and not durable (register @fastify/redis for the durable queue)')
  if (queue.replicas !== undefined) log.warn({ replicas: queue.replicas }, 'wechat: queue.replicas has no effect on the in-process queue (it applies to the durable queue on Redis)')
  return new MemoryQueue(runner, { concurrency: queue.concurrency, attempts: queue.attempts, limiter: queue.limiter }, log)
}
