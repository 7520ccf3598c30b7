/**
 * Credits under 'enforce' on a stalled Redis (SIGSTOP: it runs what it was sent once it wakes).
 * A reserve whose answer never came still took the credit when Redis woke, so the user's next send
 * was refused FST_WECHAT_NO_CREDIT though nothing had gone out; under an idempotency key the claim
 * also stayed, and the retry was answered as a duplicate of a message never sent (found by an audit
 * of late-landing writes). Now the reserve marks its take and an unanswered one is given back.
 */
import { test } from 'tap'
import { Redis } from 'ioredis'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { stallOnCall, startRedis, uniquePrefix } from './helpers/redis-server.js'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'

const ORDER = DEMO_TEMPLATE_IDS.orderShipped

for (const keyed of [false, true]) {
  test(`enforce: a reserve that timed out on a stalled Redis gives its credit back${keyed ? '; the retry under the key sends' : ''}`, { timeout: 60_000 }, async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.cleanup())
    const sim = await startSimulator(t)
    const keyPrefix = uniquePrefix('credit-stall')
    const app = await buildApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix, queue: false, credits: 'enforce' } })
    const openid = `oStall-credit-00000000${keyed ? '2' : '1'}`
    const client = new Redis(redis.url)
    t.teardown(() => client.quit())
    await client.hset(`${keyPrefix}{${sim.appId}}:credit:${openid}`, ORDER, 1)
    await app.wechat.getToken()

    const stalled = stallOnCall(app, redis, 'wechatPushUseCredit', 1500)
    const options = keyed ? { idempotencyKey: 'order-5' } : undefined
    try {
      await t.rejects(app.wechat.send(shippedMessage(openid), options), { code: 'FST_WECHAT_STORE', statusCode: 503 }, 'a coded 503, not a raw store error')
      t.ok(stalled())
      await new Promise((resolve) => setTimeout(resolve, 1200))
    } finally {
      redis.resume()
    }
    t.same(await app.wechat.credits(openid), { [ORDER]: 1 }, 'the credit the late reserve took is back')
    t.equal(sim.counters.send, 0, 'nothing was sent')
    const retry = await app.wechat.send(shippedMessage(openid), options)
    t.notOk(retry.duplicate, 'the retry is no duplicate')
    t.ok(retry.msgid, 'it is sent')
    t.same(await app.wechat.credits(openid), { [ORDER]: 0 }, 'using the one credit')
    await app.close()
  })
}

// The same for a keyed enqueue (a review found its claims discarded in two steps that the stall cut
// short: they stayed 'pending' with no job, and the retry re-queued them without a credit).
test('enforce: a keyed enqueue whose credit take timed out leaves no claim behind; the retry queues it with its credit', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.cleanup())
  const sim = await startSimulator(t)
  const keyPrefix = uniquePrefix('credit-stall-enqueue')
  const app = await buildApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix, credits: 'enforce' } })
  const openid = 'oStall-credit-000000003'
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  await client.hset(`${keyPrefix}{${sim.appId}}:credit:${openid}`, ORDER, 1)
  await app.wechat.getToken()
  const stalled = stallOnCall(app, redis, 'wechatPushUseCredit', 2500)
  try {
    await t.rejects(app.wechat.enqueue(shippedMessage(openid), { idempotencyKey: 'order-6' }), { code: 'FST_WECHAT_STORE' })
    t.ok(stalled())
    await new Promise((resolve) => setTimeout(resolve, 1800))
  } finally {
    redis.resume()
  }
  t.match(await app.wechat.stats(), { total: 0, pending: 0 }, 'the claim was undone')
  t.same(await app.wechat.credits(openid), { [ORDER]: 1 }, 'the credit is back')
  const [queued] = await app.wechat.enqueue(shippedMessage(openid), { idempotencyKey: 'order-6' })
  let status: string | undefined
  for (let i = 0; i < 100 && status !== 'sent'; i++) {
    status = (await app.wechat.status(queued?.id as string))?.status
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(status, 'sent')
  t.same(await app.wechat.credits(openid), { [ORDER]: 0 }, 'it took the credit')
  await app.close()
})
