/**
 * A Redis that stalls (SIGSTOP: connected, answering nothing, as a blackholed network path looks)
 * while the app enqueues. A key-less enqueue waited for the queue add for as long as the stall
 * lasted (43 s in the audit that found it), where everything else answered a coded 503 after ~1 s.
 * Now the add is bounded (ADD_ANSWER_MS): FST_WECHAT_QUEUE saying the message may still be
 * queued, with its id, and the message goes out exactly once when Redis answers again.
 */
import { test } from 'tap'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { stallOnCall, startRedis, uniquePrefix } from './helpers/redis-server.js'
import { until } from './queue-helpers.js'
import { ADD_ANSWER_MS, BullQueue } from '../lib/delivery/bullmq-queue.js'
import { AddUnansweredError } from '../lib/delivery/queue.js'
import { Redis } from 'ioredis'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import type { WechatSimulator } from '../lib/testing/index.js'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { PrivateRedis } from './helpers/redis-server.js'

/** A private Redis (so the test may stall it), the simulator and an app on both, its token fetched. */
async function stallApp (t: Test, prefix: string, plugin: Record<string, unknown> = {}): Promise<{ redis: PrivateRedis, sim: WechatSimulator, app: FastifyInstance }> {
  const redis = await startRedis()
  t.teardown(() => redis.cleanup())
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix: uniquePrefix(prefix), ...plugin } })
  await app.wechat.getToken()
  return { redis, sim, app }
}

test('enqueue while Redis stalls: a coded error after ADD_ANSWER_MS naming the message, which is sent once Redis answers', { timeout: 90_000 }, async (t) => {
  const { redis, sim, app } = await stallApp(t, 'stall')
  const [warm] = await app.wechat.enqueue(shippedMessage('oStall-user-000000000001'))
  await until('the warm-up message is sent', async () => (await app.wechat.status(warm?.id as string))?.status === 'sent')

  redis.pause()
  let error: Error & { code?: string, messageIds?: string[] } | undefined
  const started = Date.now()
  try {
    const settled = await Promise.race([
      app.wechat.enqueue(shippedMessage('oStall-user-000000000002')).then(() => 'resolved', (err: Error) => { error = err; return 'rejected' }),
      new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), ADD_ANSWER_MS + 10_000))
    ])
    t.equal(settled, 'rejected', `the enqueue ended while Redis was still stalled (after ${Date.now() - started} ms)`)
  } finally {
    redis.resume()
  }
  t.match(error, { code: 'FST_WECHAT_QUEUE', statusCode: 503 })
  t.match(error?.message, /may still be sent/, 'it says the message may be queued all the same')
  t.equal(error?.messageIds?.length, 1, 'and names it')

  const id = error?.messageIds?.[0] as string
  await until('the stalled add went through once Redis answered, and the message was sent', async () => (await app.wechat.status(id))?.status === 'sent', 30_000)
  t.equal(sim.accepted.filter((m) => m.touser === 'oStall-user-000000000002').length, 1, 'sent exactly once')
})

// A stalled Redis runs the commands it was sent once it wakes: a keyed send's claim that timed out
// landed later as a 'sending' record under the key, and the caller's retry under the key was answered
// `{ duplicate: true }` with nothing ever sent (found by an audit of late-landing writes). The retry
// may come once Redis answers again, or while it still stalls (then its claim must not read the late
// one before the undo removes it: the undo is one atomic step, sent first).
for (const when of ['after Redis woke', 'while Redis still stalls'] as const) {
  test(`a keyed send whose claim timed out on a stalled Redis: a retry under the key sends (${when})`, { timeout: 60_000 }, async (t) => {
    const { redis, sim, app } = await stallApp(t, 'late-send-claim', { queue: false })
    await app.wechat.send(shippedMessage('oStall-user-000000000009'))
    const stalled = stallOnCall(app, redis, 'wechatPushWriteRecords', 1700)
    const message = shippedMessage('oStall-user-000000000010')
    try {
      // (its message says what failed: it read "could not be queued: the store is unavailable" for a send: an audit)
      await t.rejects(app.wechat.send(message, { idempotencyKey: 'order-77' }), { code: 'FST_WECHAT_QUEUE', statusCode: 503, message: /idempotencyKey could not be claimed, so nothing was sent: the store is unavailable/ }, 'the claim timed out')
      // (the store's deadline is 1 s: a retry made 0.1 s later is answered once Redis wakes at 1.7 s)
      await new Promise((resolve) => setTimeout(resolve, when === 'after Redis woke' ? 900 : 100))
      t.ok(stalled())
      const retry = await app.wechat.send(message, { idempotencyKey: 'order-77' })
      t.notOk(retry.duplicate, 'not a duplicate of a message that never went out')
      t.ok(retry.msgid, 'sent')
      t.equal(sim.accepted.filter((m) => m.touser === 'oStall-user-000000000010').length, 1, 'once')
      t.match(await app.wechat.send(message, { idempotencyKey: 'order-77' }), { id: retry.id, duplicate: true }, 'and the key now names it')
    } finally {
      redis.resume()
    }
    await app.close()
  })
}

// A handler push whose queue add Redis did not answer (stalled) may still be queued when Redis wakes:
// giving up on it at close() gave its credit back, and the job then ran with the credit refunded (found
// by an audit of late-landing writes). It now keeps its credit and is logged as maybe queued. (The add
// is made to go unanswered by a wrapper that throws what the real add throws after ADD_ANSWER_MS: a
// stalled Redis would also hold @fastify/redis' own close, which quits its client.)
test('a handler push given up at close() while its queue add went unanswered keeps its credit', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.cleanup())
  const sim = await startSimulator(t)
  const keyPrefix = uniquePrefix('stall-hook')
  const openid = 'oStall-user-000000000020'
  const lines: Array<{ msg?: string }> = []
  const app = await buildApp(t, sim, {
    redisUrl: redis.url,
    logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } },
    plugin: { keyPrefix, credits: 'enforce' },
    setup: (instance) => {
      instance.post('/ship', async (_request, reply) => {
        reply.wechatPush(shippedMessage(openid))
        return { shipped: 1 }
      })
    }
  })
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  const creditKey = `${keyPrefix}{${sim.appId}}:credit:${openid}`
  await client.hset(creditKey, DEMO_TEMPLATE_IDS.orderShipped, 1)
  await app.wechat.getToken()
  const real = BullQueue.prototype.add
  let adds = 0
  BullQueue.prototype.add = async function () {
    adds++
    throw new AddUnansweredError(`the queue's Redis did not answer the add within ${ADD_ANSWER_MS} ms: the jobs may be queued all the same`)
  }
  t.teardown(() => { BullQueue.prototype.add = real })
  t.equal((await app.inject({ method: 'POST', url: '/ship' })).statusCode, 200)
  await until('the add was tried', async () => adds > 0)
  await app.close()
  t.ok(lines.some((line) => /may not be queued/.test(line.msg ?? '')), 'logged as maybe queued')
  t.notOk(lines.some((line) => /could not be queued/.test(line.msg ?? '')), 'not as lost')
  t.equal(await client.hget(creditKey, DEMO_TEMPLATE_IDS.orderShipped), '0', 'the credit stays taken (the job may run)')
})

// The same for a keyed enqueue: its claim landed late as a 'pending' record with no job, kept for the
// retention (a pending count that never went down), and a retry under the key re-queued it without
// taking its credit under 'enforce'.
test('a keyed enqueue whose claim timed out on a stalled Redis leaves no pending record behind', { timeout: 60_000 }, async (t) => {
  const { redis, sim, app } = await stallApp(t, 'late-enqueue-claim')
  const stalled = stallOnCall(app, redis, 'wechatPushWriteRecords', 1500)
  const message = shippedMessage('oStall-user-000000000030')
  try {
    await t.rejects(app.wechat.enqueue(message, { idempotencyKey: 'order-88' }), { code: 'FST_WECHAT_QUEUE' }, 'the claim timed out')
    await new Promise((resolve) => setTimeout(resolve, 1500))
  } finally {
    redis.resume()
  }
  t.ok(stalled())
  t.match(await app.wechat.stats(), { total: 0, pending: 0 }, 'the late claim was undone')
  const [queued] = await app.wechat.enqueue(message, { idempotencyKey: 'order-88' })
  await until('the retry is sent', async () => (await app.wechat.status(queued?.id as string))?.status === 'sent')
  t.equal(sim.accepted.filter((m) => m.touser === 'oStall-user-000000000030').length, 1, 'once')
  await app.close()
})

// An undo that went out and timed out runs when Redis wakes: it used to be sent again every 250 ms
// after each 1 s timeout, so a stalled Redis collected copies of it (a review of the late-undo fix).
test('an undo sent to a stalled Redis is not sent again while it waits there', { timeout: 60_000 }, async (t) => {
  const { redis, app } = await stallApp(t, 'undo-copies', { queue: false })
  const { id } = await app.wechat.send(shippedMessage('oStall-user-000000000040'))
  // (the send's 'sent' record write is batched and may go out after send() resolves: counted before the stall, not in it)
  await until('the first send is recorded sent', async () => (await app.wechat.status(id))?.status === 'sent')
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  // (every script the app runs is an EVALSHA: the claim's write, and each discard)
  const discards = async (): Promise<number> => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await client.info('commandstats'))?.[1] ?? 0)
  const before = await discards()
  stallOnCall(app, redis, 'wechatPushWriteRecords', 4000)
  try {
    await t.rejects(app.wechat.send(shippedMessage('oStall-user-000000000041'), { idempotencyKey: 'order-99' }), { code: 'FST_WECHAT_QUEUE' })
    await new Promise((resolve) => setTimeout(resolve, 3500))
  } finally {
    redis.resume()
  }
  await new Promise((resolve) => setTimeout(resolve, 500))
  // the claim's write and one discard (copies came every 1.25 s: 3 more in this stall)
  t.ok(await discards() - before <= 2, `${await discards() - before} scripts ran`)
  await app.close()
})
