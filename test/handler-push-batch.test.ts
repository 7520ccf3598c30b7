/**
 * Handler pushes are batched across requests: onSend only buffers them, and one flush per turn of
 * the event loop (or per FLUSH_AT pushes) queues them with one queue add. Each message is still
 * checked alone: an invalid one, or one without credit under `credits: 'enforce'`, is refused,
 * logged and counted without taking its batch down.
 */
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { MemoryQueue } from '../lib/delivery/memory-queue.js'
import { BullQueue } from '../lib/delivery/bullmq-queue.js'
import type { QueuedJob } from '../lib/delivery/queue.js'
import { FLUSH_AT } from '../lib/http/push-batcher.js'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import type { Teardown } from './helpers/app.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import { identity, messageIdentity, numbered, sleep, until } from './queue-helpers.js'
import { KEY, pushApp, TOKEN, waitFor } from './push-helpers.js'

/** Counts the size of every queue add (the real add runs unchanged). */
function addSizes (t: Teardown, Queue: typeof MemoryQueue | typeof BullQueue): number[] {
  const real = Queue.prototype.add
  const sizes: number[] = []
  Queue.prototype.add = async function (this: InstanceType<typeof Queue>, jobs: QueuedJob[]): Promise<void> {
    sizes.push(jobs.length)
    return real.call(this, jobs)
  }
  t.teardown(() => { Queue.prototype.add = real })
  return sizes
}

function shipRoute (app: FastifyInstance): void {
  app.post('/ship/:n', async (request, reply) => {
    const n = Number((request.params as { n: string }).n)
    reply.wechatPush(numbered('P', n))
    return { n }
  })
}

for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: 40 concurrent responses with a push each → a few queue adds, 40 messages, each sent once`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const sizes = addSizes(t, kind === 'memory' ? MemoryQueue : BullQueue)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('batch') }, setup: shipRoute })
    await app.wechat.getToken()
    const responses = await Promise.all(Array.from({ length: 40 }, (_, n) => app.inject({ method: 'POST', url: `/ship/${n}` })))
    t.ok(responses.every((r) => r.statusCode === 200))
    await until('40 accepted', () => sim.accepted.length >= 40)
    await until('40 sent', async () => (await app.wechat.stats()).sent >= 40)
    await sleep(300) // room for a duplicate to show
    t.equal(sizes.reduce((a, b) => a + b, 0), 40, 'every push added once')
    t.ok(sizes.length <= 5, `batched across requests: ${sizes.length} adds (${sizes.join(', ')})`)
    t.same(sim.accepted.map(identity).sort(), Array.from({ length: 40 }, (_, n) => messageIdentity(numbered('P', n))).sort())
    const stats = await app.wechat.stats()
    t.equal(stats.total, 40)
    t.equal(stats.sent, 40)
    t.same(app.wechat.handlerPushes(), { queued: 40, skipped: 0, failed: 0, waiting: 0 })
  })
}

test(`one response with ${FLUSH_AT * 2 + 200} pushes → adds of at most ${FLUSH_AT}`, async (t) => {
  const sim = await startSimulator(t)
  const sizes = addSizes(t, MemoryQueue)
  const app = await buildApp(t, sim, {
    plugin: { queue: { concurrency: 1 } },
    setup: (app) => {
      app.post('/bulk', async (_request, reply) => {
        reply.wechatPush(Array.from({ length: FLUSH_AT * 2 + 200 }, (_, n) => numbered('K', n)))
        return { ok: true }
      })
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/bulk' })).statusCode, 200)
  t.equal(app.wechat.handlerPushes().waiting, FLUSH_AT * 2 + 200, 'accepted, not yet queued: in memory only')
  await until('all queued', () => app.wechat.handlerPushes().queued === FLUSH_AT * 2 + 200)
  t.same([...sizes].sort((a, b) => b - a), [FLUSH_AT, FLUSH_AT, 200])
  t.equal(app.wechat.handlerPushes().waiting, 0)
})

test('skipped pushes are counted: a 4xx response queues nothing', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, {
    setup: (app) => {
      app.post('/refuse', async (_request, reply) => {
        reply.wechatPush([numbered('S', 1), numbered('S', 2)])
        return reply.code(409).send({ taken: true })
      })
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/refuse' })).statusCode, 409)
  await sleep(100)
  t.same(app.wechat.handlerPushes(), { queued: 0, skipped: 2, failed: 0, waiting: 0 })
})

for (const store of ['memory', 'redis'] as const) {
  test(`credits: 'enforce' (${store}): a handler push without credit is refused alone, logged and counted; one with credit goes`, async (t) => {
    const sim = await startSimulator(t, { requireCredits: true })
    const redisUrl = await redisFor(t, store)
    const withCredit = 'oCredit-hook-0000000001'
    const without = 'oCredit-hook-0000000002'
    const { app, url, logs } = await pushApp(t, sim, {
      listen: true,
      redisUrl,
      logLevel: 'error',
      plugin: { credits: 'enforce', keyPrefix: uniquePrefix('hook-credits') },
      setup: (app) => {
        app.post('/ship', async (_request, reply) => {
          reply.wechatPush([shippedMessage(withCredit), shippedMessage(without)])
          return { ok: true }
        })
      }
    })
    sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY, mode: 'safe', format: 'json' })
    await sim.popup([{ openid: withCredit, templateId: DEMO_TEMPLATE_IDS.orderShipped, status: 'accept' }])
    await sim.pushesSettled()
    await until('credit recorded', async () => (await app.wechat.credits(withCredit))[DEMO_TEMPLATE_IDS.orderShipped] === 1)

    t.equal((await app.inject({ method: 'POST', url: '/ship' })).statusCode, 200)
    await until('one accepted', () => sim.accepted.length === 1)
    await waitFor(() => logs.some((l) => /handler push could not be queued/.test(l.msg)))
    await sleep(200)
    t.same(sim.accepted.map((m) => m.touser), [withCredit])
    t.equal(sim.counters.send, 1, 'the refused push never reached WeChat')
    const refused = logs.filter((l) => /handler push could not be queued/.test(l.msg))
    t.equal(refused.length, 1)
    t.equal(refused[0]?.code, 'FST_WECHAT_NO_CREDIT')
    t.same(app.wechat.handlerPushes(), { queued: 1, skipped: 0, failed: 1, waiting: 0 })
    t.same(await app.wechat.credits(withCredit), { [DEMO_TEMPLATE_IDS.orderShipped]: 0 })
  })
}

/** Makes every queue add fail (nothing added) while `broken.on` is true. */
function breakAdds (t: Teardown): { on: boolean, calls: number } {
  const real = MemoryQueue.prototype.add
  const broken = { on: true, calls: 0 }
  MemoryQueue.prototype.add = async function (this: MemoryQueue, jobs: QueuedJob[]): Promise<void> {
    broken.calls++
    if (broken.on) throw new Error('connect ECONNREFUSED (the queue is unreachable)')
    return real.call(this, jobs)
  }
  t.teardown(() => { MemoryQueue.prototype.add = real })
  return broken
}

test('while the queue refuses adds, pushes wait in memory (counted as waiting); once it accepts, each goes out once', async (t) => {
  const sim = await startSimulator(t)
  const broken = breakAdds(t)
  const total = 3 * Math.ceil((FLUSH_AT + 100) / 3) // more than one flush holds
  const app = await buildApp(t, sim, {
    setup: (app) => {
      app.post('/bulk/:tag', async (request, reply) => {
        const tag = (request.params as { tag: string }).tag
        reply.wechatPush(Array.from({ length: total / 3 }, (_, n) => numbered(tag, n)))
        return { ok: true }
      })
    }
  })
  for (const tag of ['X', 'Y', 'Z']) t.equal((await app.inject({ method: 'POST', url: `/bulk/${tag}` })).statusCode, 200)
  await until('a few tries', () => broken.calls >= 3)
  t.same(app.wechat.handlerPushes(), { queued: 0, skipped: 0, failed: 0, waiting: total }, 'all accepted, none lost, none queued yet')
  broken.on = false
  await until('all queued', () => app.wechat.handlerPushes().queued === total, 20_000)
  await until('all sent', () => sim.accepted.length >= total, 30_000)
  await sleep(200)
  t.equal(new Set(sim.accepted.map(identity)).size, total, 'each once')
  t.equal((await app.wechat.stats()).total, total)
  t.same(app.wechat.handlerPushes(), { queued: total, skipped: 0, failed: 0, waiting: 0 })
})

test('close() while the queue still refuses: after the drain window each push is logged as lost and counted failed', async (t) => {
  const sim = await startSimulator(t)
  breakAdds(t)
  const { app, logs } = await pushApp(t, sim, {
    push: false,
    logLevel: 'error',
    setup: (app) => {
      app.post('/ship', async (_request, reply) => {
        reply.wechatPush([numbered('Q', 1), numbered('Q', 2), numbered('Q', 3)])
        return { ok: true }
      })
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/ship' })).statusCode, 200)
  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 15_000, 'close() is bounded')
  t.same(app.wechat.handlerPushes(), { queued: 0, skipped: 0, failed: 3, waiting: 0 })
  const lost = logs.filter((l) => /handler push could not be queued/.test(l.msg))
  t.equal(lost.length, 3)
  t.equal(new Set(lost.map((l) => l.messageId)).size, 3, 'each logged with its own id')
  t.equal(sim.counters.send, 0)
})
