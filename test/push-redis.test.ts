import { test } from 'tap'
import { startSimulator } from './helpers/app.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { collect, KEY, popupEvent, pushApp, sentEvent, TOKEN, waitFor } from './push-helpers.js'

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

test('Redis down while deduping: the push is still accepted and handled, with a warning', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sim = await startSimulator(t)
  const { app, url, logs } = await pushApp(t, sim, {
    redisUrl: redis.url,
    plugin: { keyPrefix: uniquePrefix('push-down') },
    listen: true,
    logLevel: 'warn',
    // The app's own @fastify/redis client reports the outage; that is not what this test is about.
    setup: (instance) => { (instance as unknown as { redis: { on (e: string, f: () => void): void } }).redis.on('error', () => {}) }
  })
  const all = collect(app)
  await redis.stop()
  const res = await sim.push(url, popupEvent(), { token: TOKEN, encodingAESKey: KEY })
  t.same(res, { statusCode: 200, body: 'success' })
  await waitFor(() => all.length === 1)
  const warning = logs.find((line) => /push dedupe unavailable/.test(line.msg))
  t.ok(warning, 'warned')
  t.equal(warning?.store, 'redis')
  const text = JSON.stringify(logs)
  t.notOk(text.includes(TOKEN) || text.includes(KEY), 'no secret in the logs')
  // @fastify/redis' quit() waits for a reconnect: bring Redis back so app.close() can finish.
  await redis.start()
  await waitFor(() => (app as unknown as { redis: { status: string } }).redis.status === 'ready', 15_000)
  // Close while Redis is up: teardowns run in the order they were added, and Redis' stop comes first.
  await app.close()
})
