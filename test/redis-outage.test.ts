import { test } from 'tap'
import { Redis } from 'ioredis'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'

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
