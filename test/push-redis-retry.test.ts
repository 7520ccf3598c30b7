import { test } from 'tap'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import { shippedMessage, startSimulator } from './helpers/app.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { collect, KEY, OPENID, pushApp, settle, TOKEN, TPL_A, waitFor } from './push-helpers.js'

// End to end with the real plugin: the simulator's own retries (WECHAT.md §6.5), not hand-made ones,
// carry a pop-up and a receipt through a Redis outage, and each is applied exactly once.
test('the simulator retries pushes the plugin answered 503 while its Redis was down; each is applied once', async (t) => {
  // Persistent: the message record the receipt settles must survive the restart.
  const redis = await startRedis({ persistent: true })
  t.teardown(() => redis.cleanup())
  // The pause between attempts leaves time to restart Redis and for the client to reconnect.
  const sim = await startSimulator(t, { pushRetryDelayMs: 3000 })
  const { app, url } = await pushApp(t, sim, {
    redisUrl: redis.url,
    plugin: { keyPrefix: uniquePrefix('push-retry'), queue: false },
    listen: true,
    // The app's own @fastify/redis client reports the outage; that is not what this test is about.
    setup: (instance) => { (instance as unknown as { redis: { on (e: string, f: () => void): void } }).redis.on('error', () => {}) }
  })
  const all = collect(app)
  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY, format: 'json', sentEvents: false })
  const sent = await app.wechat.send(shippedMessage(OPENID))
  // A direct send's record write is not awaited: let it reach Redis before the outage.
  await waitForAsync(async () => (await app.wechat.status(sent.id))?.status === 'sent')
  await redis.stop()

  const popup = sim.popup([{ openid: OPENID, templateId: TPL_A, status: 'accept' }])
  const receipt = sim.push(undefined, {
    FromUserName: OPENID,
    Event: 'subscribe_msg_sent_event',
    List: [{ TemplateId: DEMO_TEMPLATE_IDS.orderShipped, MsgID: sim.accepted[0].msgid, ErrorCode: 0, ErrorStatus: 'success' }]
  })
  await waitFor(() => sim.pushes.length === 2, 10_000)
  for (const attempt of sim.pushes) {
    t.match(attempt, { attempt: 1, statusCode: 503 }, `${String(attempt.event)}: first attempt refused while the store is down`)
    t.equal(JSON.parse(attempt.body).code, 'FST_WECHAT_PUSH_UNAVAILABLE')
  }
  await redis.start()

  t.same(await popup, [{ statusCode: 200, body: 'success' }], 'a retry of the pop-up was acknowledged')
  t.same(await receipt, { statusCode: 200, body: 'success' }, 'a retry of the receipt was acknowledged')
  t.same(await app.wechat.credits(OPENID), { [TPL_A]: 1 }, 'the accept credited once')
  t.equal((await app.wechat.status(sent.id))?.status, 'delivered', 'the receipt was applied')
  t.equal((await app.wechat.stats()).delivered, 1, 'and counted once')
  for (const event of ['subscribe_msg_popup_event', 'subscribe_msg_sent_event']) {
    const attempts = sim.pushes.filter((p) => p.event === event)
    t.equal(attempts.filter((p) => p.statusCode === 200).length, 1, `${event}: acknowledged once, then no more retries`)
    t.same(attempts.map((p) => p.attempt), attempts.map((_, i) => i + 1))
  }
  await waitFor(() => all.length === 2)
  await settle()
  t.equal(all.length, 2, 'handlers saw each push once')
  // Close while Redis is up: teardowns run in the order they were added, and Redis' stop comes first.
  await app.close()
})

async function waitForAsync (predicate: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 3000
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error('waitForAsync: condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

// A stalled Redis (SIGSTOP) answers nothing, so the store's 1 s deadline ends the attempt with a 503;
// but the commands it sent still run once Redis answers again. Found by an audit with a slow proxy.
test('a claim that lands after its attempt gave up (Redis stalled) is dropped: the next retry applies the push', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.cleanup())
  const sim = await startSimulator(t, { pushRetryDelayMs: 1000 })
  const { app, url } = await pushApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix: uniquePrefix('late-claim'), queue: false }, listen: true })
  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY, format: 'json', sentEvents: false })
  await app.wechat.credits(OPENID) // the connection is up

  redis.pause()
  const popup = sim.popup([{ openid: OPENID, templateId: TPL_A, status: 'accept' }])
  try {
    await waitFor(() => sim.pushes.length === 1, 10_000)
  } finally {
    redis.resume()
  }
  t.match(sim.pushes[0], { attempt: 1, statusCode: 503 }, 'the first attempt timed out on the stalled store')
  // Its claim (10 s) lands now; before, every retry within those 10 s was told "being applied by
  // another attempt" (503), and WeChat's three attempts were all spent: the pop-up was lost.
  t.same(await popup, [{ statusCode: 200, body: 'success' }], 'a retry was acknowledged')
  t.equal(sim.pushes.length, 2, 'the second attempt applied it')
  t.same(await app.wechat.credits(OPENID), { [TPL_A]: 1 }, 'credited once')
  await app.close()
})

test('an accept whose credit write timed out and landed late is not added again by the retry', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.cleanup())
  const sim = await startSimulator(t, { pushRetryDelayMs: 1000 })
  const { app, url } = await pushApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix: uniquePrefix('late-credit'), queue: false }, listen: true })
  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY, format: 'json', sentEvents: false })
  await app.wechat.credits(OPENID)
  // The store is stalled at the moment the credit write goes out (after the claim went through), for
  // longer than its 1 s deadline: the attempt answers 503, and the write runs when Redis wakes.
  const client = (app as unknown as { redis: Record<string, unknown> }).redis
  let stalled = false
  for (const name of ['wechatPushAddCredits']) {
    const original = client[name] as (...args: unknown[]) => unknown
    if (typeof original !== 'function') continue
    client[name] = function (this: unknown, ...args: unknown[]) {
      if (!stalled) {
        stalled = true
        redis.pause()
        setTimeout(() => redis.resume(), 1500).unref()
      }
      return original.apply(this, args)
    }
  }
  try {
    t.same(await sim.popup([{ openid: OPENID, templateId: TPL_A, status: 'accept' }]), [{ statusCode: 200, body: 'success' }], 'a retry was acknowledged')
  } finally {
    redis.resume()
  }
  t.ok(stalled, 'the credit write was stalled')
  t.match(sim.pushes[0], { attempt: 1, statusCode: 503 }, 'the first attempt timed out on the stalled store')
  t.same(await app.wechat.credits(OPENID), { [TPL_A]: 1 }, 'one accept, one credit (it was 2: the late write and the retry\'s)')
  await app.close()
})
