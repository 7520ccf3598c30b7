import { test } from 'tap'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import { shippedMessage, startSimulator } from './helpers/app.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { changeEvent, collect, KEY, OPENID, popupEvent, pushApp, sentEvent, settle, TOKEN, TPL_A, TPL_B, waitFor } from './push-helpers.js'

test('two instances sharing Redis: a WeChat retry reaching the other instance is handled once', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sim = await startSimulator(t)
  const plugin = { keyPrefix: uniquePrefix('push') }
  const a = await pushApp(t, sim, { redisUrl: redis.url, plugin, listen: true })
  const b = await pushApp(t, sim, { redisUrl: redis.url, plugin, listen: true })
  t.equal(a.app.wechat.storeKind, 'redis')
  let handled = 0
  a.app.wechat.on('event', () => { handled++ })
  b.app.wechat.on('event', () => { handled++ })
  const options = { token: TOKEN, encodingAESKey: KEY, format: 'json' as const }

  // WeChat retries with a new nonce and timestamp; the content is the same (§6.5).
  t.same(await sim.push(a.url, popupEvent(), { ...options, nonce: '111' }), { statusCode: 200, body: 'success' })
  t.same(await sim.push(b.url, popupEvent(), { ...options, nonce: '222' }), { statusCode: 200, body: 'success' })
  t.same(await sim.push(a.url, popupEvent(), { ...options, nonce: '333' }), { statusCode: 200, body: 'success' })
  await waitFor(() => handled >= 1)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(handled, 1, 'handled once across the fleet')

  // A different push is not a duplicate.
  await sim.push(b.url, sentEvent(), options)
  await waitFor(() => handled === 2)
})

test('Redis down: pushes get a coded 503 so WeChat retries; after Redis is back the retry is applied exactly once', async (t) => {
  // Persistent: the message record the receipt settles must survive the restart.
  const redis = await startRedis({ persistent: true })
  t.teardown(() => redis.cleanup())
  const sim = await startSimulator(t)
  const { app, url, logs } = await pushApp(t, sim, {
    redisUrl: redis.url,
    plugin: { keyPrefix: uniquePrefix('push-down'), queue: false },
    listen: true,
    logLevel: 'warn',
    // The app's own @fastify/redis client reports the outage; that is not what this test is about.
    setup: (instance) => { (instance as unknown as { redis: { on (e: string, f: () => void): void } }).redis.on('error', () => {}) }
  })
  const client = (app as unknown as { redis: { status: string } }).redis
  const all = collect(app)
  const options = { token: TOKEN, encodingAESKey: KEY, format: 'json' as const }
  const sent = await app.wechat.send(shippedMessage(OPENID))
  const receipt = { ...sentEvent(sent.msgid), List: [{ TemplateId: DEMO_TEMPLATE_IDS.orderShipped, MsgID: sent.msgid, ErrorCode: '0', ErrorStatus: 'success' }] }
  const accept = { ...popupEvent(), List: [{ TemplateId: TPL_A, SubscribeStatusString: 'accept', PopupScene: 0 }, { TemplateId: TPL_B, SubscribeStatusString: 'accept', PopupScene: 0 }] }

  // A direct send's record write is not awaited: let it reach Redis before the outage.
  await waitFor2(async () => (await app.wechat.status(sent.id))?.status === 'sent')
  await redis.stop()
  for (const [event, nonce] of [[accept, '1'], [receipt, '2'], [changeEvent(), '3']] as Array<[Record<string, unknown>, string]>) {
    const res = await sim.push(url, event, { ...options, nonce })
    t.equal(res.statusCode, 503, `${String(event.Event)}: not acknowledged while the store is down`)
    t.same(JSON.parse(res.body), { statusCode: 503, code: 'FST_WECHAT_PUSH_UNAVAILABLE', error: 'Service Unavailable', message: 'push could not be stored now; WeChat retries it' })
  }
  await settle()
  t.equal(all.length, 0, 'no handler saw a push whose effects were not stored')
  const warning = logs.find((line) => /push dedupe unavailable/.test(line.msg))
  t.ok(warning, 'warned')
  t.equal(warning?.store, 'redis')
  // The store's failure is the plugin's own: warn, on request.log (a reqId) with the plugin's bindings.
  t.match(warning, { level: 40, reqId: /./, plugin: 'fastify-wechat-push', appId: sim.appId })

  await redis.start()
  await waitFor(() => client.status === 'ready', 15_000)
  // WeChat's retries: new nonce, same content (§6.5). Each applies once, a second retry is a duplicate.
  for (const nonce of ['11', '12']) t.same(await sim.push(url, accept, { ...options, nonce }), { statusCode: 200, body: 'success' })
  t.same(await app.wechat.credits(OPENID), { [TPL_A]: 1, [TPL_B]: 1 }, 'each accept credited once')
  for (const nonce of ['21', '22']) t.same(await sim.push(url, receipt, { ...options, nonce }), { statusCode: 200, body: 'success' })
  t.equal((await app.wechat.status(sent.id))?.status, 'delivered', 'the receipt was applied')
  t.equal((await app.wechat.stats()).delivered, 1, 'and counted once')
  t.same(await sim.push(url, changeEvent(), { ...options, nonce: '31' }), { statusCode: 200, body: 'success' })
  t.same(await app.wechat.credits(OPENID), { [TPL_A]: 0, [TPL_B]: 1 }, 'the reject was applied')
  await waitFor(() => all.length === 3)
  await settle()
  t.equal(all.length, 3, 'handlers saw each push once')
  const text = JSON.stringify(logs)
  t.notOk(text.includes(TOKEN) || text.includes(KEY), 'no secret in the logs')
  // Close while Redis is up: teardowns run in the order they were added, and Redis' stop comes first.
  await app.close()
})

async function waitFor2 (predicate: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 3000
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error('waitFor2: condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
