import { createServer } from 'node:http'
import { test } from 'tap'
import { WechatHttpClient } from '../lib/api/http-client.js'
import { fetchAccessToken } from '../lib/api/token-endpoint.js'
import { SimulatorClock } from '../lib/testing/clock.js'
import FakeTimers from '@sinonjs/fake-timers'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { exitCode, forkFixture, nextMessage } from './helpers/fork.js'
import { captureLogs } from './helpers/log-capture.js'

test('cold cache: 500 concurrent sends in one process → exactly one token fetch', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  const results = await Promise.all(Array.from({ length: 500 }, () => app.wechat.send(shippedMessage())))
  t.equal(results.length, 500)
  t.equal(sim.accepted.length, 500)
  t.equal(sim.counters.stable_token, 1, 'one call to the token endpoint')
  t.equal(sim.tokenFetches().stable_token, 1)
})

test('cold cache: 4 processes × 250 concurrent sends on one Redis → exactly one token fetch in total', async (t) => {
  const sim = await startSimulator(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const env = { REDIS_URL: redis.url, SIM_URL: sim.url, APP_ID: sim.appId, APP_SECRET: sim.appSecret, KEY_PREFIX: uniquePrefix('fleet'), SENDS: '250' }
  const children = Array.from({ length: 4 }, () => forkFixture('fleet-worker.ts', env))
  t.teardown(() => { for (const child of children) child.kill('SIGKILL') })
  await Promise.all(children.map((child) => nextMessage(child, 'ready')))
  const done = children.map((child) => nextMessage<{ ok: number, errors: string[] }>(child, 'done'))
  for (const child of children) child.send('go')
  const reports = await Promise.all(done)
  t.same(reports.map((r) => r.ok), [250, 250, 250, 250], JSON.stringify(reports.flatMap((r) => r.errors)))
  t.equal(sim.accepted.length, 1000)
  t.equal(sim.counters.stable_token, 1, 'one call to the token endpoint for the whole fleet')
  t.same((await Promise.all(children.map((child) => exitCode(child, 20_000)))), [0, 0, 0, 0], 'each instance exits by itself after close')
})

test('the token is invalidated mid-load → every send succeeds with one refetch', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  await app.wechat.getToken()
  const sends: Promise<unknown>[] = []
  for (let i = 0; i < 300; i++) {
    if (i === 100) sim.invalidateTokens()
    sends.push(app.wechat.send(shippedMessage()))
    if (i % 25 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  const results = await Promise.allSettled(sends)
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 300)
  t.equal(sim.accepted.length, 300)
  t.equal(sim.tokenFetches().stable_token, 2, 'one refetch')
  t.equal(sim.counters.stable_token, 2)
})

test('classic endpoint: cgi-bin/token, one fetch, refetch after 40001', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { tokenEndpoint: 'classic' } })
  await Promise.all(Array.from({ length: 50 }, () => app.wechat.send(shippedMessage())))
  t.equal(sim.tokenFetches().token, 1)
  t.equal(sim.counters.stable_token, 0)
  const before = await app.wechat.getToken()
  sim.invalidateTokens()
  await app.wechat.send(shippedMessage())
  t.not(await app.wechat.getToken(), before)
  t.equal(sim.tokenFetches().token, 2)
  t.equal(sim.tokenFetches().force_refresh, 0, 'classic mode has no force_refresh')
})

test('stable: a refused token WeChat still hands out is retried with first, and force-refreshed only when refused again, within budget', async (t) => {
  // Noon in China: the budget is per China day, and the test moves the clock 11 minutes on. Started
  // from the real time it failed in CI run at 15:59 UTC, when the day turned over mid-test.
  const sim = await startSimulator(t, { clock: new SimulatorClock(Date.UTC(2026, 2, 1, 4)) })
  const app = await buildApp(t, sim, { plugin: { clock: sim.clock } })
  const first = await app.wechat.getToken()
  // A stray 40001 on a token stable_token still returns: retried with it, no force_refresh (WECHAT.md
  // §1.5: force "only if the normal call keeps returning the token that just failed"; an audit found
  // every single 40001 spending one of the day's 20 and killing the token for every other holder).
  sim.failNext('send', { errcode: 40001 })
  const stray = await app.wechat.send(shippedMessage())
  t.ok(stray.msgid, 'retried with the same token: sent')
  t.equal(await app.wechat.getToken(), first, 'the token is unchanged')
  t.equal(sim.tokenFetches().force_refresh, 0)

  // Refused again right after WeChat handed it out as current: force_refresh, and a third try with the new token.
  sim.clock.advance(31_000)
  sim.failNext('send', { errcode: 40001 }, 2)
  const forced = await app.wechat.send(shippedMessage())
  t.ok(forced.msgid, 'sent with the force-refreshed token')
  const second = await app.wechat.getToken()
  t.not(second, first)
  t.equal(sim.tokenFetches().force_refresh, 1)

  // 10 s later: the budget says 30 s apart, so no force_refresh: refused twice, the send ends with that 40001.
  sim.clock.advance(10_000)
  sim.failNext('send', { errcode: 40001 }, 2)
  await t.rejects(app.wechat.send(shippedMessage()), { code: 'FST_WECHAT_API', errcode: 40001, errorClass: 'token' })
  t.equal(await app.wechat.getToken(), second, 'the token is unchanged')
  t.equal(sim.tokenFetches().force_refresh, 1)
  // Many calls refused at once (a review found each fetch answering the refused token started the next
  // for those who joined it, one after another): no fetch at all while that token is known to be
  // handed out again and not to be forced, each call retried once with it; getToken({ forceRefresh }) answers it too.
  const fetchesBefore = sim.counters.stable_token
  sim.failNext('send', { errcode: 40001 }, 100)
  const refused = await Promise.allSettled(Array.from({ length: 50 }, () => app.wechat.send(shippedMessage())))
  t.ok(refused.every((r) => r.status === 'rejected' && (r.reason as { errcode?: number }).errcode === 40001), 'each refused twice: its 40001')
  t.equal(await app.wechat.getToken({ forceRefresh: true }), second)
  t.equal(sim.counters.stable_token, fetchesBefore, 'no token fetch for them')

  // 20 a day: after 19 more (31 s apart) the 21st is refused locally, before WeChat's 45009.
  for (let i = 0; i < 19; i++) {
    sim.clock.advance(31_000)
    sim.failNext('send', { errcode: 40001 }, 2)
    await app.wechat.send(shippedMessage())
  }
  t.equal(sim.tokenFetches().force_refresh, 20)
  sim.clock.advance(31_000)
  sim.failNext('send', { errcode: 40001 }, 2)
  await t.rejects(app.wechat.send(shippedMessage()), { code: 'FST_WECHAT_API', errcode: 40001 })
  t.equal(sim.tokenFetches().force_refresh, 20, 'the budget is never exceeded')
})

test('stable: a force_refresh WeChat refuses (45009, its own count used up by other clients) leaves the current token in use', async (t) => {
  const sim = await startSimulator(t, { clock: new SimulatorClock(Date.UTC(2026, 2, 1, 4)) })
  const app = await buildApp(t, sim, { plugin: { clock: sim.clock } })
  const first = await app.wechat.getToken()
  // Another client of the AppID has used WeChat's 20 force refreshes today; this app's own count has not.
  for (let i = 0; i < 21; i++) {
    sim.clock.advance(31_000)
    await fetch(`${sim.url}/cgi-bin/stable_token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ grant_type: 'client_credential', appid: sim.appId, secret: sim.appSecret, force_refresh: true }) })
  }
  const current = await app.wechat.getToken({ forceRefresh: true })
  t.not(current, first, 'the other client replaced it; a normal call hands out its token')
  const refusedForces = (): number => sim.requests.filter((r) => r.endpoint === 'stable_token' && r.errcode === 45009).length
  t.equal(refusedForces(), 1, 'the other client\'s 21st')
  // Refused twice while handed out as current: the force_refresh gets 45009, and the send still
  // ends with WeChat's 40001 for it, not FST_WECHAT_TOKEN 45009, with the token kept.
  sim.clock.advance(31_000)
  sim.failNext('send', { errcode: 40001 }, 2)
  const err = await app.wechat.send(shippedMessage()).catch((e) => e)
  t.match(err, { code: 'FST_WECHAT_API', errcode: 40001 })
  t.equal(refusedForces(), 2, 'one force_refresh asked for, refused')
  t.equal(await app.wechat.getToken(), current, 'the token stays in use')
  const sent = await app.wechat.send(shippedMessage())
  t.ok(sent.msgid, 'the next send goes out with it, no fetch needed')
  // WeChat said no for today: the next refusals in the day do not ask again.
  for (let i = 0; i < 3; i++) {
    sim.clock.advance(31_000)
    sim.failNext('send', { errcode: 40001 }, 2)
    await app.wechat.send(shippedMessage()).catch(() => {})
  }
  t.equal(refusedForces(), 2, 'no force_refresh asked for again that day')
})

test('getToken({ forceRefresh }) replaces the current token', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { tokenEndpoint: 'classic' } })
  const first = await app.wechat.getToken()
  const second = await app.wechat.getToken({ forceRefresh: true })
  t.not(second, first)
  t.equal(await app.wechat.getToken(), second)
})

test('token endpoint errors map to FST_WECHAT_TOKEN with advice, and never carry the secret', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  sim.failNext('stable_token', { errcode: 40164, errmsg: 'invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist rid: 6502a1b3-1c2d3e4f-5a6b7c8d' })
  const err = await app.wechat.getToken().catch((e) => e)
  t.equal(err.code, 'FST_WECHAT_TOKEN')
  t.equal(err.statusCode, 503)
  t.equal(err.errcode, 40164)
  t.equal(err.rid, '6502a1b3-1c2d3e4f-5a6b7c8d')
  t.match(err.message, /203\.0\.113\.7/)
  t.match(err.message, /whitelist/)

  sim.failNext('stable_token', { errcode: 40125, errmsg: `invalid appsecret ${sim.appSecret}` })
  const wrongSecret = await app.wechat.getToken().catch((e) => e)
  t.equal(wrongSecret.errcode, 40125)
  t.match(wrongSecret.message, /appSecret is wrong/)
  t.notMatch(wrongSecret.message, sim.appSecret)

  const wrong = await buildApp(t, sim, { plugin: { appSecret: 'not-the-secret-000' } })
  await t.rejects(wrong.wechat.getToken(), { code: 'FST_WECHAT_TOKEN', errcode: 40125 })

  // Another app's secret (well formed, 32 hex digits) gets 40001 on a fetch (WECHAT.md §0): a
  // configuration error like 40125, not a stale token to fetch again: one call, then the error.
  for (const tokenEndpoint of ['stable', 'classic'] as const) {
    const endpoint = tokenEndpoint === 'stable' ? 'stable_token' : 'token'
    const other = await buildApp(t, sim, { plugin: { appSecret: '0123456789abcdef0123456789abcdef', tokenEndpoint } })
    const before = sim.counters[endpoint]
    const otherSecret = await other.wechat.getToken().catch((e) => e)
    t.match(otherSecret, { code: 'FST_WECHAT_TOKEN', errcode: 40001, message: /appSecret is wrong or belongs to another app/ }, tokenEndpoint)
    t.notMatch(otherSecret.message, '0123456789abcdef0123456789abcdef')
    t.equal(sim.counters[endpoint] - before, 1, `${tokenEndpoint}: fetched once, not again`)
  }

  sim.failNext('stable_token', { errcode: -1 }, 2)
  t.type(await app.wechat.getToken(), 'string', '-1 on the token endpoint is retried')
})

test('the app boots while WeChat is unreachable, and a send then fails with a coded error', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { baseUrl: 'http://127.0.0.1:9' } })
  await t.rejects(app.wechat.send(shippedMessage()), { code: 'FST_WECHAT_TOKEN', statusCode: 503 })
})

// The scheduled job logged its failures on fastify.log, without the plugin logger's bindings: with two
// registrations nobody could tell which mini program's token refresh was failing. Failed before.
test('a failing scheduled refresh is logged on the plugin\'s logger: plugin, appId and namespace', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs('warn')
  await buildApp(t, sim, { logger: logs.logger, plugin: { baseUrl: 'http://127.0.0.1:9', namespace: 'shop', retry: { attempts: 1, minDelay: 5, maxDelay: 5 } } })
  const failed = (): Record<string, unknown> | undefined => logs.parsed().find((line) => line.msg === 'wechat: scheduled token refresh failed; trying again next interval')
  for (let i = 0; i < 2000 && failed() === undefined; i++) await new Promise((resolve) => setTimeout(resolve, 5))
  t.match(failed(), { level: 40, plugin: 'fastify-wechat-push', appId: sim.appId, namespace: 'shop', job: `wechat:token:${sim.appId}:shop`, code: 'FST_WECHAT_TOKEN' })
  t.notMatch(logs.lines.join('\n'), sim.appSecret, 'no secret in the line')
})

test('scheduled refresh renews before expiry (fake clock), and nothing runs after close', async (t) => {
  const timers = FakeTimers.install({ toFake: ['setInterval', 'clearInterval'] })
  t.teardown(() => timers.uninstall())
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { clock: sim.clock, refreshInterval: 30 } })
  const waitFetches = async (n: number): Promise<void> => {
    for (let i = 0; i < 1000 && sim.tokenFetches().stable_token < n; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  await waitFetches(1)
  const first = await app.wechat.getToken()
  t.equal(sim.tokenFetches().stable_token, 1, 'fetched at boot by the job')

  // 7200 s token: nothing to do until its last 300 s.
  sim.clock.advance(6000_000)
  await timers.tickAsync(30_000)
  t.equal(sim.counters.stable_token, 1, 'no call while the token has time left')

  sim.clock.advance(920_000) // 280 s left
  await timers.tickAsync(30_000)
  await waitFetches(2)
  t.equal(sim.tokenFetches().stable_token, 2, 'renewed ahead of expiry')
  // The simulator has answered; give the job a moment to adopt the answer.
  for (let i = 0; i < 500 && await app.wechat.getToken() === first; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  const second = await app.wechat.getToken()
  t.not(second, first)
  const sendsBefore = sim.counters.stable_token
  await app.wechat.send(shippedMessage())
  t.equal(sim.counters.stable_token, sendsBefore, 'the request path did not wait for a fetch')

  await app.close()
  const calls = sim.counters.stable_token
  sim.clock.advance(8000_000)
  await timers.tickAsync(120_000)
  t.equal(sim.counters.stable_token, calls, 'no job after close')
})

test('a short-lived token (expires_in 20 s) serves requests until its last quarter: not a fetch per send', async (t) => {
  const sim = await startSimulator(t, { tokenTtlSeconds: 20 })
  const app = await buildApp(t, sim, { plugin: { clock: sim.clock, tokenEndpoint: 'classic' } })
  for (let i = 0; i < 5; i++) await app.wechat.send(shippedMessage())
  t.equal(sim.tokenFetches().token, 1, 'one fetch for 5 sends (it was one per send: under 30 s left counted as expiring)')
  sim.clock.advance(16_000) // 4 s left: within its last quarter
  await app.wechat.send(shippedMessage())
  t.equal(sim.tokenFetches().token, 2, 'renewed when a request could outlive it')
  t.equal(sim.accepted.length, 6)
})

test('a short-lived token (expires_in 120 s, refreshAhead 300 s) is renewed at half its life, not on every tick', async (t) => {
  const timers = FakeTimers.install({ toFake: ['setInterval', 'clearInterval'] })
  t.teardown(() => timers.uninstall())
  const sim = await startSimulator(t, { tokenTtlSeconds: 120 })
  const app = await buildApp(t, sim, { plugin: { clock: sim.clock, tokenEndpoint: 'classic', refreshInterval: 30 } })
  const settle = async (): Promise<void> => {
    // the job's fetch is a real HTTP call: let it land before the next tick
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await settle()
  await app.wechat.getToken()
  t.equal(sim.tokenFetches().token, 1, 'fetched at boot')
  for (let tick = 1; tick <= 8; tick++) {
    sim.clock.advance(30_000)
    await timers.tickAsync(30_000)
    await settle()
  }
  // 240 s: renewed with 60 s left, every 60 s (4 times); with refreshAhead over the lifetime it was every tick (8)
  t.equal(sim.tokenFetches().token, 5, 'one renewal per 60 s')
  const sent = await app.wechat.send(shippedMessage())
  t.ok(sent.msgid, 'the renewed token works')
  t.equal(sim.tokenFetches().token, 5, 'the send did not fetch')
})

test('close releases everything: the process exits by itself', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  for (const env of [{}, { REDIS_URL: redis.url, KEY_PREFIX: uniquePrefix('close') }] as Record<string, string>[]) {
    const child = forkFixture('close-exits.ts', env)
    const { resources } = await nextMessage<{ resources: string[] }>(child, 'closed', 30_000)
    // (the BullMQ queue's connections left ioredis' 2 s disconnect timer behind: the exit came 2 s late)
    t.same(resources.filter((r) => r === 'Timeout'), [], `no timer left after close() ${JSON.stringify(Object.keys(env))}`)
    t.equal(await exitCode(child, 30_000), 0, `exits by itself ${JSON.stringify(Object.keys(env))}`)
  }
})

test('close while Redis is down: the process still exits by itself (no BullMQ timer or reconnecting socket left)', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const child = forkFixture('close-exits.ts', { REDIS_URL: redis.url, KEY_PREFIX: uniquePrefix('close-down'), WAIT_FOR_CLOSE: '1' })
  await nextMessage(child, 'sent', 30_000)
  await redis.stop()
  child.send({ type: 'close' })
  await nextMessage(child, 'closed', 40_000)
  t.equal(await exitCode(child, 15_000), 0, 'exits by itself')
})

// An expires_in beyond WeChat's promised 7200 s was believed as is (1e12: the token cached for
// ever, long after WeChat dropped it). Failed before.
test('expires_in beyond 7200 s is not believed', async (t) => {
  const server = createServer((req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"access_token":"TOKEN-A","expires_in":1000000000000}') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const http = new WechatHttpClient({ baseUrls: [`http://127.0.0.1:${(server.address() as { port: number }).port}`], timeout: 2000 })
  t.teardown(() => http.close())
  t.same(await fetchAccessToken(http, { mode: 'stable', appId: 'wx0', appSecret: 'secret-000' }), { token: 'TOKEN-A', expiresIn: 7200 })
})
