import { test } from 'tap'
import { Redis } from 'ioredis'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { freePort, startRedis, uniquePrefix } from './helpers/redis-server.js'
import { dropQueuedCommands } from '../lib/store/queued-commands.js'

async function until (check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

test('Redis stopped during sends → sends keep succeeding; restarted → the token is shared again', async (t) => {
  const sim = await startSimulator(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const keyPrefix = uniquePrefix('outage')
  const logs = captureLogs('info')
  const app = await buildApp(t, sim, { redisUrl: redis.url, logger: logs.logger, plugin: { keyPrefix } })
  await Promise.all(Array.from({ length: 20 }, () => app.wechat.send(shippedMessage())))
  t.equal(sim.tokenFetches().stable_token, 1)

  await redis.stop()
  const during = await Promise.allSettled(Array.from({ length: 50 }, () => app.wechat.send(shippedMessage())))
  t.equal(during.filter((r) => r.status === 'fulfilled').length, 50, 'served from the in-process token')

  // The token expires while Redis is down: the plugin fetches directly and keeps going.
  sim.expireTokens()
  const afterExpiry = await Promise.allSettled(Array.from({ length: 50 }, () => app.wechat.send(shippedMessage())))
  t.equal(afterExpiry.filter((r) => r.status === 'fulfilled').length, 50, 'fetched directly while Redis is down')
  t.equal(sim.tokenFetches().stable_token, 2, 'one direct fetch, not one per send')
  const unavailable = logs.parsed().filter((line) => String(line.msg).includes('store is unavailable'))
  t.equal(unavailable.length, 1, 'logged once, not per send')

  await redis.start()
  await until(() => (app as unknown as { redis: Redis }).redis.status === 'ready')
  await app.wechat.refreshToken() // the scheduled job's work: shares our token with the fleet again
  t.ok(logs.parsed().some((line) => String(line.msg).includes('reachable again')), 'recovery is logged')

  // A second instance on the restarted Redis reads the shared token instead of fetching.
  const second = await buildApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix } })
  t.equal(await second.wechat.getToken(), await app.wechat.getToken())
  t.equal(sim.tokenFetches().stable_token, 2, 'shared again: no new fetch')
  t.equal(sim.accepted.length, 120)
  // Close while Redis is up: teardowns run in the order they were added, and Redis' stop comes first.
  await second.close()
  await app.close()
})

// A direct send during an outage went out, but its record write failed and was dropped: once Redis
// was back, status(id) answered null and stats() left the message out. The record is now held in
// memory and written when Redis answers. Failed before (status null for all 30).
test('records of direct sends made while Redis is down are written once it is back', async (t) => {
  const sim = await startSimulator(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const logs = captureLogs('info')
  const app = await buildApp(t, sim, { redisUrl: redis.url, logger: logs.logger, plugin: { keyPrefix: uniquePrefix('held'), templates: false } })
  const first = await app.wechat.send(shippedMessage())
  await until(async () => (await app.wechat.status(first.id)) !== null)

  await redis.stop()
  const sent = await Promise.all(Array.from({ length: 30 }, () => app.wechat.send(shippedMessage())))
  t.equal(sent.length, 30, 'sent while Redis is down')
  await until(() => logs.parsed().some((line) => String(line.msg).includes('keeping it (and any more) in memory')))
  t.equal(logs.parsed().filter((line) => String(line.msg).includes('could not write the message record')).length, 1, 'logged once, not per send')

  // (the test's redis-server keeps nothing across a restart: only what is written after it counts)
  await redis.start()
  await until(async () => {
    try {
      return (await app.wechat.stats()).total === 30
    } catch {
      return false
    }
  }, 30_000)
  for (const { id, msgid } of sent) t.match(await app.wechat.status(id), { id, status: 'sent', msgid, source: 'send' })
  t.equal((await app.wechat.stats()).sent, 30)
  const written = logs.parsed().filter((line) => line.msg === 'wechat: the store answers again; the held message records are written')
  t.equal(written.reduce((sum, line) => sum + Number(line.written), 0), 30, 'logged as written')
  await app.close()
})

test('records still held when the app closes with Redis down: one last try, then logged as lost with their ids', async (t) => {
  const sim = await startSimulator(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const logs = captureLogs('info')
  const app = await buildApp(t, sim, { redisUrl: redis.url, logger: logs.logger, plugin: { keyPrefix: uniquePrefix('held-close'), templates: false } })
  const first = await app.wechat.send(shippedMessage())
  await until(async () => (await app.wechat.status(first.id)) !== null)
  await redis.stop()
  const sent = await Promise.all(Array.from({ length: 3 }, () => app.wechat.send(shippedMessage())))
  await until(() => logs.parsed().some((line) => String(line.msg).includes('keeping it (and any more) in memory')))
  await app.close()
  const lost = logs.parsed().find((line) => String(line.msg).includes('not confirmed written before close'))
  t.match(lost, { level: 50, lost: 3 })
  t.same([...(lost?.messageIds as string[])].sort(), sent.map(({ id }) => id).sort())
})

// Audit: a command of ours sent just as Redis went away (the socket no longer writable, the client
// not yet told) waits in ioredis' offline queue to be resent; @fastify/redis's quit() at close then
// queued behind it until ioredis gave up (20 reconnections: ~65 s) and app.close() rejected with
// MaxRetriesPerRequestError. That race needs the event loop held at the wrong moment; here the
// command of ours is put in the offline queue by issuing it while the client reconnects. Failed before
// (close() still under way after 20 s).
test('a command of ours waiting in the client\'s offline queue does not hold app.close(): it is taken out and failed', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.cleanup())
  const sim = await startSimulator(t)
  const keyPrefix = uniquePrefix('close-queued')
  const app = await buildApp(t, sim, { redisUrl: redis.url, redisOptions: { maxRetriesPerRequest: 20 }, plugin: { keyPrefix, queue: { durable: false } } })
  await app.wechat.getToken()
  const client = (app as unknown as { redis: Redis }).redis
  const offline = (): number => (client as unknown as { offlineQueue: { length: number } }).offlineQueue.length
  client.on('error', () => {})
  await redis.stop()
  const deadline = Date.now() + 10_000
  while (client.status === 'ready' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  const ours = client.get(`${keyPrefix}{${sim.appId}}:token`).then(() => 'answered', (err: Error) => err.message)
  t.equal(offline(), 1, 'queued to be sent when Redis is back')

  const closed = app.close().then(() => 'closed', (err: Error) => `rejected: ${err.message}`)
  const outcome = await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 20_000, 'still closing after 20 s'))])
  t.equal(outcome, 'closed', 'close() resolved')
  t.match(await ours, /the app is closing/, 'the queued command of ours was failed')
})

test('dropQueuedCommands takes out only the commands naming a key of ours', async (t) => {
  const client = new Redis({ port: await freePort(), lazyConnect: true, retryStrategy: () => 1000, maxRetriesPerRequest: 20 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  client.connect().catch(() => {})
  const ours = client.get('wechat:{wx1}:token').then(() => 'answered', (err: Error) => err.message)
  const script = client.eval('return 1', 1, 'wechat:{wx1}:msg:1').then(() => 'answered', (err: Error) => err.message)
  const theirs = client.get('app:session:1').then(() => 'answered', (err: Error) => err.message)
  const otherApp = client.get('wechat:{wx2}:token').then(() => 'answered', (err: Error) => err.message)
  t.equal(dropQueuedCommands(client, 'wechat:{wx1}', 'closing'), 2)
  // behind the client's own ioredis keyPrefix too (ioredis writes it into the queued key)
  const prefixed = new Redis({ port: await freePort(), lazyConnect: true, retryStrategy: () => 1000, keyPrefix: 'app:' })
  prefixed.on('error', () => {})
  t.teardown(() => prefixed.disconnect())
  prefixed.connect().catch(() => {})
  const behindPrefix = prefixed.get('wechat:{wx1}:token').then(() => 'answered', (err: Error) => err.message)
  t.equal(dropQueuedCommands(prefixed, 'wechat:{wx1}', 'closing'), 1)
  t.equal(await behindPrefix, 'closing')
  t.equal(await ours, 'closing')
  t.equal(await script, 'closing')
  t.equal((client as unknown as { offlineQueue: { length: number } }).offlineQueue.length, 2, 'the app\'s own and another mini program\'s stay queued')
  client.disconnect()
  t.not(await theirs, 'closing')
  t.not(await otherApp, 'closing')
})
