/**
 * Handler pushes flushed together go into BullMQ as one batch job (lib/delivery/batch-jobs.ts), and
 * each message in it still gets what a single job gets: its own record and outcome, retries with the
 * attempts it has left, 45011 and 45009 handling, and no second send when the batch runs again.
 */
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Queue } from 'bullmq'
import { Sender } from '../lib/delivery/sender.js'
import type { WechatSimulator } from '../lib/testing/index.js'
import { buildApp, startSimulator } from './helpers/app.js'
import type { Teardown } from './helpers/app.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { identity, inspectQueue, numbered, queuedMessages, sleep, until } from './queue-helpers.js'

interface Setup { app: FastifyInstance, sim: WechatSimulator, inspect: Queue }

/** An app on its own Redis whose route /ship/:n pushes n messages in one response. */
async function batchApp (t: Teardown, queue: object = {}, plugin: object = {}): Promise<Setup> {
  const sim = await startSimulator(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const keyPrefix = uniquePrefix('batches')
  const inspect = inspectQueue(redis.url, keyPrefix, sim.appId)
  t.teardown(() => inspect.close())
  const app = await buildApp(t, sim, {
    redisUrl: redis.url,
    plugin: { keyPrefix, queue, ...plugin },
    setup: (app) => {
      app.post('/ship/:n', async (request, reply) => {
        const n = Number((request.params as { n: string }).n)
        reply.wechatPush(Array.from({ length: n }, (_, i) => numbered('B', i)))
        return { n }
      })
    }
  })
  await app.wechat.getToken()
  return { app, sim, inspect }
}

async function ship (app: FastifyInstance, n: number): Promise<void> {
  const res = await app.inject({ method: 'POST', url: `/ship/${n}` })
  if (res.statusCode !== 200) throw new Error(`/ship answered ${res.statusCode}`)
  await until('queued', () => app.wechat.handlerPushes().queued === n)
}

test('pushes flushed together are one batch job; every message is sent once and recorded', async (t) => {
  const { app, sim, inspect } = await batchApp(t)
  await ship(app, 5)
  await until('5 accepted', () => sim.accepted.length === 5)
  await until('the job completed', async () => await queuedMessages(inspect, 'completed') === 5)
  const jobs = await inspect.getJobs(['completed'])
  t.same(jobs.map((job) => job.name), ['batch'], 'one job for the five')
  t.equal(new Set(sim.accepted.map(identity)).size, 5, 'no duplicate')
  await sleep(200)
  const stats = await app.wechat.stats()
  t.equal(stats.total, 5)
  t.equal(stats.sent, 5)
})

test('33 pushes in one flush: a batch of 32 and a single job (a batch is never of one)', async (t) => {
  const { app, sim, inspect } = await batchApp(t)
  await ship(app, 33)
  await until('33 accepted', () => sim.accepted.length === 33)
  await until('the jobs completed', async () => await queuedMessages(inspect, 'completed') === 33)
  const jobs = await inspect.getJobs(['completed'])
  t.same(jobs.map((job) => job.name).sort(), ['batch', 'send'])
  t.equal(new Set(sim.accepted.map(identity)).size, 33, 'no duplicate')
})

test('with a limiter each message is its own job (BullMQ\'s limiter counts jobs)', async (t) => {
  const { app, sim, inspect } = await batchApp(t, { limiter: { max: 100, duration: 1000 } })
  await ship(app, 4)
  await until('4 accepted', () => sim.accepted.length === 4)
  await until('the jobs completed', async () => (await inspect.getJobCounts('completed')).completed === 4)
  t.same((await inspect.getJobs(['completed'])).map((job) => job.name), ['send', 'send', 'send', 'send'])
})

test('a transient error in a batch: that message continues as its own job and is sent; the others once', async (t) => {
  const { app, sim, inspect } = await batchApp(t, { concurrency: 1, attempts: 3 })
  sim.failNext('send', { errcode: -1 })
  await ship(app, 4)
  await until('4 accepted', () => sim.accepted.length === 4)
  await until('all jobs completed', async () => await queuedMessages(inspect, 'completed') === 5)
  t.equal(sim.counters.send, 5, 'four messages, one of them twice')
  t.equal(new Set(sim.accepted.map(identity)).size, 4)
  const single = (await inspect.getJobs(['completed'])).find((job) => job.name === 'send')
  t.equal(single?.data.attemptsBefore, 1, 'it left the batch with one attempt used')
  t.equal(single?.opts.attempts, 2, 'and the attempts it had left')
  const record = await app.wechat.status(single?.id as string)
  t.equal(record?.status, 'sent')
  t.equal(record?.attempts, 2, 'the record counts both attempts')
})

test('a batch message that uses its last attempt ends failed, with every attempt counted', async (t) => {
  // backoff long enough to fail the message's second attempt too, once the batch is done
  const { app, sim, inspect } = await batchApp(t, { concurrency: 1, attempts: 2 }, { retry: { attempts: 2, minDelay: 400, maxDelay: 400 } })
  sim.failNext('send', { errcode: -1 })
  await ship(app, 2)
  await until('the batch done: 1 accepted, 2 calls', () => sim.accepted.length === 1 && sim.counters.send === 2)
  sim.failNext('send', { errcode: -1 })
  await until('its second attempt', () => sim.counters.send === 3)
  await until('the single job done', async () => (await inspect.getJobs(['completed', 'failed'])).some((job) => job.name === 'send'))
  await sleep(200)
  const stats = await app.wechat.stats()
  t.equal(stats.failed, 1)
  t.equal(stats.sent, 1)
  t.equal(stats.recentFailures[0]?.errcode, -1)
  t.equal((await app.wechat.status(stats.recentFailures[0]?.id as string))?.attempts, 2)
})

test('45011 in a batch: that message waits 60 s as its own job without spending an attempt', async (t) => {
  const { app, sim, inspect } = await batchApp(t, { concurrency: 1 })
  sim.failNext('send', { errcode: 45011 })
  await ship(app, 3)
  await until('2 accepted', () => sim.accepted.length === 2)
  await until('one job delayed', async () => (await inspect.getDelayedCount()) === 1)
  const [delayed] = await inspect.getDelayed()
  t.equal(delayed?.name, 'send')
  t.equal(delayed?.data.attemptsBefore, 0, 'no attempt spent')
  t.ok((delayed?.delay ?? 0) >= 59_000, `delayed about 60 s (${delayed?.delay} ms)`)
  t.equal((await app.wechat.status(delayed?.id as string))?.status, 'pending')
})

test('45009 in a batch: the queue pauses and the messages not yet tried wait with it', async (t) => {
  const { app, sim, inspect } = await batchApp(t, { concurrency: 1 })
  sim.failNext('send', { errcode: 45009 })
  await ship(app, 4)
  await until('four jobs delayed', async () => (await inspect.getDelayedCount()) === 4)
  await sleep(300)
  t.equal(sim.counters.send, 1, 'nothing called WeChat after the 45009')
  const delayed = await inspect.getDelayed()
  t.same(delayed.map((job) => job.name), ['send', 'send', 'send', 'send'])
  t.ok(delayed.every((job) => job.data.attemptsBefore === 0), 'none spent an attempt')
  const stats = await app.wechat.stats()
  t.equal(stats.pending, 4)
})

test('a batch run again after its messages have their outcome sends nothing', async (t) => {
  const { app, sim, inspect } = await batchApp(t)
  sim.failNext('send', { errcode: 40003 }) // one ends failed: also final
  await ship(app, 3)
  await until('the job completed', async () => await queuedMessages(inspect, 'completed') === 3)
  const [batch] = await inspect.getJobs(['completed'])
  await sleep(200)
  const before = await app.wechat.stats()
  // What a crash after the run and before BullMQ heard of it leads to: the same batch again.
  await inspect.add('batch', batch?.data, { jobId: 'batch-again' })
  await until('the second run completed', async () => (await inspect.getJobCounts('completed')).completed === 2)
  await sleep(200)
  t.equal(sim.counters.send, 3, 'nothing sent again')
  t.same(await app.wechat.stats(), before, 'records unchanged')
})

test('a batch keeps to the concurrency: WeChat calls in flight per instance', async (t) => {
  const { app, sim } = await batchApp(t, { concurrency: 2 })
  sim.setLatency(40)
  let inFlight = 0
  let most = 0
  const deliver = Sender.prototype.deliver
  Sender.prototype.deliver = async function (this: Sender, ...args: Parameters<Sender['deliver']>) {
    most = Math.max(most, ++inFlight)
    try {
      return await deliver.apply(this, args)
    } finally {
      inFlight--
    }
  }
  t.teardown(() => { Sender.prototype.deliver = deliver })
  await ship(app, 12)
  await until('12 accepted', () => sim.accepted.length === 12)
  t.equal(most, 2, 'never more than 2 at once')
})
