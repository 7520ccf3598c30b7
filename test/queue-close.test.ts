import { test } from 'tap'
import { buildApp, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { duplicates, inspectQueue, numbered, queuedMessages, settled, sleep, statusCounts, until, within } from './queue-helpers.js'

const COUNT = 40

test('bullmq queue: close() with active jobs lets them finish, takes no new job, resolves; the rest waits for the next instance', async (t) => {
  const sim = await startSimulator(t, { latencyMs: 1000 })
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const keyPrefix = uniquePrefix('close')
  const plugin = { keyPrefix, queue: { concurrency: 4 }, timeout: 5000 }
  const first = await buildApp(t, sim, { redisUrl: redis.url, plugin })
  const ids = (await first.wechat.enqueue(Array.from({ length: COUNT }, (_, i) => numbered('C', i)))).map((r) => r.id)
  await until('4 jobs active', () => sim.counters.send >= 4)
  await sleep(100)

  const callsAtClose = sim.counters.send
  t.equal(await within(first.close(), 20_000), 'done', 'close resolves')
  t.equal(sim.counters.send, callsAtClose, 'no job was started after close began')
  const closedAt = sim.counters.send
  await sleep(1200)
  t.equal(sim.counters.send, closedAt, 'nothing runs after close')

  const queue = inspectQueue(redis.url, keyPrefix, sim.appId)
  t.teardown(() => queue.close())
  // (enqueue() of an array makes batch jobs: messages, not jobs, are counted)
  t.equal(await queue.getActiveCount(), 0, 'the active jobs completed')
  t.equal(await queuedMessages(queue, 'wait', 'delayed'), COUNT - callsAtClose, 'the messages not tried wait in Redis')

  sim.setLatency(0)
  const second = await buildApp(t, sim, { redisUrl: redis.url, plugin })
  await settled(second, ids)
  t.same(await statusCounts(second, ids), { sent: COUNT }, 'the next instance sends the rest')
  t.equal(sim.accepted.length, COUNT)
  t.same(duplicates(sim.accepted), { byIdentity: 0, byMsgid: 0 }, 'no duplicates after a graceful close')
})

test('memory queue: close() with active jobs lets them finish and resolves; what waits is dropped and logged', async (t) => {
  const sim = await startSimulator(t, { latencyMs: 1000 })
  const logs = captureLogs('warn')
  const app = await buildApp(t, sim, { logger: logs.logger, plugin: { queue: { concurrency: 4 }, timeout: 5000 } })
  const ids = (await app.wechat.enqueue(Array.from({ length: COUNT }, (_, i) => numbered('M', i)))).map((r) => r.id)
  await until('4 jobs active', () => sim.counters.send >= 4)
  await sleep(100)
  const callsAtClose = sim.counters.send
  const store = app.wechat
  t.equal(await within(app.close(), 20_000), 'done', 'close resolves')
  t.equal(sim.counters.send, callsAtClose, 'no job was started after close began')
  await sleep(1200)
  t.equal(sim.counters.send, callsAtClose, 'nothing runs after close')
  t.equal(sim.accepted.length, callsAtClose)
  // The memory store outlives close: the active ones were recorded as sent.
  t.same(await statusCounts(app, ids), { sent: callsAtClose, pending: COUNT - callsAtClose })
  t.equal(store, app.wechat)
  const dropped = logs.parsed().find((line) => /closed with messages still waiting/.test(String(line.msg)))
  t.equal(dropped?.dropped, COUNT - callsAtClose, 'the dropped messages are counted in the log')
})

// The queue's own connection was opened at registration: when another plugin then failed the boot,
// ready() rejected and that socket kept the process alive (nothing calls close() on a failed boot
// in many apps). Now it opens at start() (onReady) or with the first add. Failed before.
test('bullmq queue: a boot that fails after the plugin registered opens no connection of ours', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sim = await startSimulator(t)
  const { Redis } = await import('ioredis')
  const probe = new Redis(redis.url)
  t.teardown(() => probe.quit())
  const clients = async (): Promise<number> => String(await probe.client('LIST')).trim().split('\n').length
  const before = await clients()
  const Fastify = (await import('fastify')).default
  const fastifyRedis = (await import('@fastify/redis')).default
  const wechatPush = (await import('../lib/index.js')).default
  const app = Fastify()
  await app.register(fastifyRedis, { url: redis.url })
  app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, keyPrefix: uniquePrefix('failed-boot') })
  app.register(async () => { throw new Error('another plugin fails the boot') })
  await t.rejects(async () => { await app.ready() }, /another plugin fails the boot/)
  await sleep(300)
  t.equal(await clients(), before + 1, 'only the app\'s own @fastify/redis client is connected')
  await app.close()
})
