/**
 * The token lock on a stalled Redis (SIGSTOP: it runs what it was sent once it wakes). An instance
 * whose lock request timed out fetched anyway, as it should (a send must not wait on Redis), but kept
 * the token to itself: when Redis woke, the lock it had asked for was taken with no token stored, and
 * another instance waited ~25 s for it (found by an audit of late-landing writes). Now the token is
 * stored and the lock let go once the store answers.
 */
import { test } from 'tap'
import { buildApp, startSimulator } from './helpers/app.js'
import { stallOnCall, startRedis, uniquePrefix } from './helpers/redis-server.js'

test('a token lock taken late by a stalled Redis is let go and the token stored: another instance does not wait for it', { timeout: 90_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.cleanup())
  const sim = await startSimulator(t)
  const keyPrefix = uniquePrefix('token-stall')
  let stalled = (): boolean => false
  const stallLock = (app: object): void => { stalled = stallOnCall(app, redis, 'set', 1500, (args) => String(args[0]).endsWith(':token:lock')) }
  const first = await buildApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix }, setup: stallLock })
  const token = await first.wechat.getToken()
  t.ok(stalled(), 'the lock request met the stall')
  await new Promise((resolve) => setTimeout(resolve, 2000)) // Redis is awake again

  const second = await buildApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix } })
  const started = Date.now()
  t.equal(await second.wechat.getToken(), token, 'the second instance reads the first one\'s token')
  const waited = Date.now() - started
  t.ok(waited < 3000, `at once (${waited} ms), not after the late lock expired`)
  t.equal(sim.tokenFetches().stable_token, 1, 'one fetch for both')
})
