import { test } from 'tap'
import type { Redis } from 'ioredis'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { until } from './queue-helpers.js'
import wechatPush from '../lib/index.js'

// @fastify/redis leaves its client without an 'error' listener once connected: during an outage
// ioredis printed "[ioredis] Unhandled error event" to stderr at every reconnection attempt, outside
// the app's logger. The plugin now says it once through the app's logger, and once when it is back.
test('a Redis outage is said once through the app\'s logger, not on stderr at every reconnection; and once when Redis is back', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sim = await startSimulator(t)
  const logs = captureLogs('info')
  const app = await buildApp(t, sim, { redisUrl: redis.url, logger: logs.logger, plugin: { keyPrefix: uniquePrefix('client-errors'), queue: false } })
  const client = (app as unknown as { redis: Redis }).redis
  await app.wechat.send(shippedMessage())

  const printed: string[] = []
  const consoleError = console.error
  console.error = (...args: unknown[]) => { printed.push(args.map(String).join(' ')) }
  t.teardown(() => { console.error = consoleError })

  let attempts = 0
  client.on('reconnecting', () => { attempts++ })
  await redis.stop()
  await until('three reconnection attempts', () => attempts >= 3, 20_000)
  const warned = logs.parsed().filter((line) => String(line.msg).startsWith('wechat: the Redis client lost its connection'))
  t.equal(warned.length, 1, `said once over ${attempts} reconnection attempts`)
  // (the first error of the outage: the killed server's reset, or a refused reconnection)
  t.match(warned[0], { level: 40, plugin: 'fastify-wechat-push', appId: sim.appId, code: /^(ECONNRESET|ECONNREFUSED)$/ })
  t.same(printed.filter((line) => line.includes('Unhandled error event')), [], 'nothing printed by ioredis on stderr')
  t.ok((await app.wechat.send(shippedMessage())).msgid, 'sends go on through the outage')

  await redis.start()
  await until('the client is ready again', () => client.status === 'ready', 20_000)
  t.equal(logs.parsed().filter((line) => line.msg === 'wechat: the Redis client is connected again').length, 1, 'the recovery is said once')

  const listeners = client.listenerCount('error')
  await app.close()
  t.equal(client.listenerCount('error'), Math.max(0, listeners - 1), 'the plugin\'s listener goes with it')
})

test('many registrations on one client (a namespace per mini program): one listener pair, one line per outage, removed with the last', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sim = await startSimulator(t)
  const logs = captureLogs('info')
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning.name) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const app = await buildApp(t, sim, {
    redisUrl: redis.url,
    logger: logs.logger,
    plugin: { queue: false },
    setup: (fastify) => {
      for (let i = 0; i < 12; i++) fastify.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, namespace: `mp${i}`, baseUrl: sim.url, keyPrefix: uniquePrefix(`many${i}`), queue: false })
    }
  })
  const client = (app as unknown as { redis: Redis }).redis
  t.equal(client.listenerCount('error'), 1, 'one error listener for 13 registrations')
  t.equal(client.listenerCount('ready'), 1)

  let attempts = 0
  client.on('reconnecting', () => { attempts++ })
  await redis.stop()
  await until('two reconnection attempts', () => attempts >= 2, 20_000)
  t.equal(logs.parsed().filter((line) => String(line.msg).startsWith('wechat: the Redis client lost its connection')).length, 1, 'one line for the outage')
  await redis.start()
  await until('the client is ready again', () => client.status === 'ready', 20_000)
  await app.close()
  t.equal(client.listenerCount('error'), 0, 'removed when the last registration closed')
  t.same(warnings.filter((name) => name === 'MaxListenersExceededWarning'), [])
})

// Audit: @fastify/redis with its usual keyPrefix failed ready() with BullMQ's own error ("ioredis does
// not support ioredis prefixes"), uncoded and naming neither option. Failed before.
test('a Redis client with ioredis\' keyPrefix: FST_WECHAT_OPTIONS for the durable queue; fine with queue.durable false', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sim = await startSimulator(t)
  await t.rejects(buildApp(t, sim, { redisUrl: redis.url, redisOptions: { keyPrefix: 'svc:' }, plugin: { keyPrefix: uniquePrefix('client-prefix') } }),
    { code: 'FST_WECHAT_OPTIONS', message: /keyPrefix "svc:".*BullMQ.*this plugin's keyPrefix option/ })
  const app = await buildApp(t, sim, { redisUrl: redis.url, redisOptions: { keyPrefix: 'svc:' }, plugin: { keyPrefix: uniquePrefix('client-prefix'), queue: { durable: false } } })
  t.ok((await app.wechat.send(shippedMessage())).msgid, 'the store works under the client\'s prefix')
})
