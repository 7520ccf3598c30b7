/**
 * Handler pushes keep one message id from the moment their response is sent (issue #6's fleet run: a
 * push whose queue add went through but whose answer was lost was queued again under a new id and
 * sent twice). The add is made to "lose its answer" by a wrapper around the real queue's add: the
 * real add runs, then the wrapper throws as a dropped connection would. The push must then be
 * retried under the same id and reach WeChat once: through BullMQ's jobId dedupe while the job is
 * kept, through the job runner's guard once the job was completed and removed (or, in the
 * in-process queue, forgotten after its run).
 */
import { test } from 'tap'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import fastifyRedis from '@fastify/redis'
import wechatPush from '../lib/index.js'
import { BullQueue } from '../lib/delivery/bullmq-queue.js'
import { MemoryQueue } from '../lib/delivery/memory-queue.js'
import type { QueuedJob } from '../lib/delivery/queue.js'
import type { Queue } from 'bullmq'
import type { WechatSimulator } from '../lib/testing/index.js'
import { startSimulator } from './helpers/app.js'
import type { Teardown } from './helpers/app.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { identity, inspectQueue, numbered, queuedMessages, sleep, until } from './queue-helpers.js'

type QueueClass = typeof BullQueue | typeof MemoryQueue

/**
 * Wraps `Queue.prototype.add` for this test: the first `times` calls add for real, run `after`, then
 * throw as if the answer had been lost. Answers the size of every add, in order.
 */
function loseAnswers (t: Teardown, Queue: QueueClass, times: number, after?: (jobs: QueuedJob[]) => Promise<void>): number[] {
  const real = Queue.prototype.add
  const sizes: number[] = []
  let lost = 0
  Queue.prototype.add = async function (this: InstanceType<QueueClass>, jobs: QueuedJob[]): Promise<void> {
    sizes.push(jobs.length)
    await real.call(this, jobs)
    if (lost < times) {
      lost++
      await after?.(jobs)
      throw new Error('read ECONNRESET (the add went through; its answer was lost)')
    }
  }
  t.teardown(() => { Queue.prototype.add = real })
  return sizes
}

async function shipApp (t: Teardown, sim: WechatSimulator, redisUrl: string | undefined, keyPrefix: string): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  if (redisUrl) await app.register(fastifyRedis, { url: redisUrl, maxRetriesPerRequest: 1 })
  await app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, keyPrefix, retry: { attempts: 3, minDelay: 5, maxDelay: 20 } })
  app.post('/ship', async (_request, reply) => {
    reply.wechatPush([numbered('A', 1), numbered('A', 2), numbered('A', 3)])
    return { shipped: 3 }
  })
  await app.ready()
  await app.wechat.getToken()
  return app
}

const cases = [
  { name: 'in-process queue (its job forgotten after its run)', kind: 'memory' },
  { name: 'BullMQ, the job still kept', kind: 'bullmq' },
  { name: 'BullMQ, the job completed and removed before the retry', kind: 'bullmq-removed' }
] as const

for (const { name, kind } of cases) {
  test(`${name}: a handler push whose queue add lost its answer is retried under the same id and sent once`, async (t) => {
    const sim = await startSimulator(t)
    const keyPrefix = uniquePrefix('hook-ids')
    let redisUrl: string | undefined
    if (kind !== 'memory') {
      const redis = await startRedis()
      t.teardown(() => redis.stop())
      redisUrl = redis.url
    }
    // The first message to reach WeChat is refused for good (40003): its record ends 'failed', a
    // final status the re-run must keep, as it keeps 'sent'.
    sim.failNext('send', { errcode: 40003 })
    const inspect = redisUrl ? inspectQueue(redisUrl, keyPrefix, sim.appId) : undefined
    if (inspect) t.teardown(() => inspect.close())
    const sizes = loseAnswers(t, kind === 'memory' ? MemoryQueue : BullQueue, 1, kind === 'bullmq-removed'
      ? async (jobs) => {
        // The first run finishes and its jobs are removed (removeOnComplete / removeOnFail trimming).
        // (one batch job: handler pushes flushed together share it)
        await until('the three messages finished', async () => await queuedMessages(inspect as Queue, 'completed') === 3)
        t.equal(await inspect?.clean(0, 100, 'completed').then((removed) => removed.length), 1, 'the one (batch) job removed')
        t.equal(jobs.length, 3)
      }
      : undefined)
    const app = await shipApp(t, sim, redisUrl, keyPrefix)

    const res = await app.inject({ method: 'POST', url: '/ship' })
    t.equal(res.statusCode, 200)
    await until('queued after the retry', () => app.wechat.handlerPushes().queued === 3)
    await until('three attempts at WeChat', () => sim.counters.send >= 3)
    if (inspect) await until('the jobs done', async () => await queuedMessages(inspect, 'completed') === 3)
    await sleep(500) // a duplicate would show by now: the re-added jobs ran (or were no-ops)

    t.same(sizes, [3, 3], 'one add for the three pushes, retried once with the same three')
    t.equal(sim.counters.send, 3, 'each message went to WeChat once')
    t.equal(sim.accepted.length, 2)
    t.equal(new Set(sim.accepted.map(identity)).size, 2, 'no duplicate')
    const stats = await app.wechat.stats()
    t.equal(stats.total, 3, 'one record per push')
    t.equal(stats.sent, 2)
    t.equal(stats.failed, 1)
    t.same(app.wechat.handlerPushes(), { queued: 3, skipped: 0, failed: 0, waiting: 0 })
  })
}

test('BullMQ: a job added again after its message was sent (or failed) completes without sending', async (t) => {
  const sim = await startSimulator(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const keyPrefix = uniquePrefix('hook-rerun')
  const app = await shipApp(t, sim, redis.url, keyPrefix)
  const inspect = inspectQueue(redis.url, keyPrefix, sim.appId)
  t.teardown(() => inspect.close())
  sim.failNext('send', { errcode: 40003 })
  // one enqueue each: single jobs (an array would be one batch job)
  const results = [...await app.wechat.enqueue(numbered('R', 1)), ...await app.wechat.enqueue(numbered('R', 2))]
  await until('both done', async () => (await inspect.getJobCounts('completed')).completed === 2)
  const before = await Promise.all(results.map((r) => app.wechat.status(r.id)))
  t.same(before.map((r) => r?.status).sort(), ['failed', 'sent'])

  // What a second add of the same message does once its first job was removed: a new job, same id.
  for (const { id } of results) {
    const job = await inspect.getJob(id)
    await job?.remove()
    await inspect.add('send', job?.data, { jobId: id })
  }
  await until('the re-added jobs done', async () => (await inspect.getJobCounts('completed')).completed === 2)
  await sleep(200)
  t.equal(sim.counters.send, 2, 'nothing sent again')
  const after = await Promise.all(results.map((r) => app.wechat.status(r.id)))
  t.same(after.map((r) => [r?.status, r?.attempts]), before.map((r) => [r?.status, r?.attempts]), 'records unchanged')
  t.equal((await app.wechat.stats()).total, 2)
})
