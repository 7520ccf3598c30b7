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
