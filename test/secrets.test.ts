import { test } from 'tap'
import { buildApp, SECRET, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { Redis } from 'ioredis'

test('no secret (appSecret, token) in any log line at trace level, nor in Redis keys', async (t) => {
  const sim = await startSimulator(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const logs = captureLogs('trace')
  const keyPrefix = uniquePrefix('secrets')
  const app = await buildApp(t, sim, { redisUrl: redis.url, logger: logs.logger, plugin: { keyPrefix, timeout: 1500 } })
  const tokens = new Set<string>()
  tokens.add(await app.wechat.getToken())
  await app.wechat.send(shippedMessage())
  sim.invalidateTokens()
  await app.wechat.send(shippedMessage())
  tokens.add(await app.wechat.getToken())
  sim.failNext('send', { errcode: 40001 })
  await app.wechat.send(shippedMessage()).catch(() => {})
  tokens.add(await app.wechat.getToken())
  sim.failNext('send', { delayMs: 4000 })
  sim.failNext('send', { errcode: 43101 })
  await app.wechat.send(shippedMessage()).catch(() => {})
  sim.failNext('stable_token', { errcode: 40125, errmsg: `invalid appsecret ${SECRET}` })
  await app.wechat.getToken({ forceRefresh: true }).catch(() => {})
  sim.failNext('send', { httpStatus: 502 }, 3)
  await app.wechat.send(shippedMessage()).catch(() => {})
  await app.wechat.send({ ...shippedMessage(), data: { thing2: 'x'.repeat(40) } }).catch(() => {})
  tokens.add(await app.wechat.getToken())

  t.ok(logs.lines.length > 5, 'the plugin logged')
  for (const line of logs.lines) {
    t.notOk(line.includes(SECRET), 'no appSecret in a log line')
    for (const token of tokens) if (line.includes(token)) t.fail(`a token leaked into a log line: ${line.slice(0, 120)}`)
  }
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  const keys = await client.keys(`${keyPrefix}*`)
  t.ok(keys.length > 0)
  for (const key of keys) {
    t.notOk(key.includes(SECRET), 'no secret in a key')
    for (const token of tokens) t.notOk(key.includes(token), 'no token in a key')
    t.ok(key.includes(`{${sim.appId}}`), 'every key carries the app hash tag')
  }
})
