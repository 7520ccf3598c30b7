import { test } from 'tap'
import type { Test } from 'tap'
import { request } from 'undici'
import { createSimulator, DEMO_TEMPLATE_IDS, SimulatorClock } from '../lib/testing/index.js'
import type { WechatSimulator } from '../lib/testing/index.js'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'

// The quota APIs of WECHAT.md §8.1 (getApiQuota, clear_quota, clear_quota/v2) answered the 404 page,
// so the documented way out of a 45009 (the 21st force refresh of a day) could not be tested, and a
// send's 45009 only came from failNext. Each failed before.

const MESSAGE = {
  touser: 'oAbC1-xYz_exampleOpenid000',
  template_id: DEMO_TEMPLATE_IDS.meetingReminder,
  data: { thing1: { value: '三楼会议室' }, date2: { value: '2026年3月1日 15:00' } }
}

async function start (t: Test, options?: Parameters<typeof createSimulator>[0]): Promise<WechatSimulator> {
  // 2026-03-01 10:00 China time
  const sim = await createSimulator({ clock: new SimulatorClock(Date.UTC(2026, 2, 1, 2)), ...options, logger: false })
  t.teardown(() => sim.close())
  return sim
}

async function post (sim: WechatSimulator, path: string, body: unknown, token?: string): Promise<Record<string, unknown>> {
  const query = token === undefined ? '' : `?access_token=${token}`
  const res = await request(`${sim.url}${path}${query}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } })
  return await res.body.json() as Record<string, unknown>
}

async function stableToken (sim: WechatSimulator, force = false): Promise<Record<string, unknown>> {
  return post(sim, '/cgi-bin/stable_token', { grant_type: 'client_credential', appid: sim.appId, secret: sim.appSecret, force_refresh: force })
}

test('sendQuota: subscribe/send answers 45009 once the day\'s calls are used up, until midnight China time', async (t) => {
  const sim = await start(t, { sendQuota: 3 })
  const token = (await stableToken(sim)).access_token as string
  const send = async (): Promise<Record<string, unknown>> => post(sim, '/cgi-bin/message/subscribe/send', MESSAGE, token)
  t.same((await Promise.all([send(), send(), send()])).map((a) => a.errcode), [0, 0, 0])
  t.match(await send(), { errcode: 45009, errmsg: /^reach max api daily quota limit/ })
  t.match(await post(sim, '/cgi-bin/openapi/quota/get', { cgi_path: '/cgi-bin/message/subscribe/send' }, token), { errcode: 0, quota: { daily_limit: 3, used: 3, remain: 0 } })
  t.equal(sim.accepted.length, 3, 'a refused call sends nothing')
  sim.clock.advance(14 * 3_600_000) // 00:00 China time
  const next = (await stableToken(sim)).access_token as string
  t.equal((await post(sim, '/cgi-bin/message/subscribe/send', MESSAGE, next)).errcode, 0, 'a new day')
  t.match(await post(sim, '/cgi-bin/openapi/quota/get', { cgi_path: '/cgi-bin/message/subscribe/send' }, next), { quota: { used: 1, remain: 2 } })
})

test('getApiQuota: the token is checked; a malformed path 76003, an API it does not keep 76021; bodies as WeChat reads them', async (t) => {
  const sim = await start(t)
  const token = (await stableToken(sim)).access_token as string
  t.match(await post(sim, '/cgi-bin/openapi/quota/get', { cgi_path: '/cgi-bin/message/subscribe/send' }, token), {
    errcode: 0, errmsg: 'ok', quota: { daily_limit: 10_000_000, used: 0, remain: 10_000_000 }, rate_limit: { refresh_second: 60 }
  })
  t.equal((await post(sim, '/cgi-bin/openapi/quota/get', { cgi_path: '/cgi-bin/message/subscribe/send' })).errcode, 41001)
  for (const path of ['cgi-bin/token', 'https://api.weixin.qq.com/cgi-bin/token', '//api.weixin.qq.com/x', '/cgi-bin/token?x=1', 42]) {
    t.equal((await post(sim, '/cgi-bin/openapi/quota/get', { cgi_path: path }, token)).errcode, 76003, String(path))
  }
  // WECHAT.md §1.1: the token endpoints' daily quota is read with getApiQuota (76021 before)
  t.match(await post(sim, '/cgi-bin/openapi/quota/get', { cgi_path: '/cgi-bin/token' }, token), { errcode: 0, quota: { daily_limit: 2000, used: 0, remain: 2000 } })
  t.match(await post(sim, '/cgi-bin/openapi/quota/get', { cgi_path: '/cgi-bin/stable_token' }, token), { errcode: 0, quota: { daily_limit: 500_000, used: 1, remain: 499_999 } })
  await stableToken(sim)
  t.match(await post(sim, '/cgi-bin/openapi/quota/get', { cgi_path: '/cgi-bin/stable_token' }, token), { quota: { used: 2 } }, 'each fetch counts')
  t.equal((await post(sim, '/cgi-bin/openapi/quota/get', { cgi_path: '/wxa/getwxacode' }, token)).errcode, 76021)
  t.equal((await post(sim, '/cgi-bin/openapi/quota/get', '', token)).errcode, 44002)
  t.equal((await post(sim, '/cgi-bin/openapi/quota/get', '{"cgi_path":', token)).errcode, 47001)
  t.equal(sim.counters.quota_get, 13)
})

test('clear_quota/v2 (appid + appsecret) and clear_quota (token): a reset clears today\'s counts, force refreshes included; 10 a month, then 48006', async (t) => {
  const sim = await start(t, { sendQuota: 1 })
  for (let i = 0; i < 20; i++) {
    t.equal((await stableToken(sim, true)).errcode, undefined, `force refresh ${i + 1}`)
    sim.clock.advance(30_000)
  }
  t.match(await stableToken(sim, true), { errcode: 45009 }, 'the 21st force refresh of the day')
  const token = (await stableToken(sim)).access_token as string
  t.equal((await post(sim, '/cgi-bin/message/subscribe/send', MESSAGE, token)).errcode, 0)
  t.equal((await post(sim, '/cgi-bin/message/subscribe/send', MESSAGE, token)).errcode, 45009)

  // credentials as the token endpoints check them; none of these is a reset
  t.equal((await post(sim, '/cgi-bin/clear_quota/v2', { appsecret: sim.appSecret })).errcode, 41002)
  t.equal((await post(sim, '/cgi-bin/clear_quota/v2', { appid: 'wxother', appsecret: sim.appSecret })).errcode, 40013)
  t.equal((await post(sim, '/cgi-bin/clear_quota/v2', { appid: sim.appId })).errcode, 41004)
  t.equal((await post(sim, '/cgi-bin/clear_quota/v2', { appid: sim.appId, appsecret: 'wrong' })).errcode, 40125)
  t.equal((await post(sim, '/cgi-bin/clear_quota', { appid: 'wxother' }, token)).errcode, 40013)
  t.equal((await post(sim, '/cgi-bin/clear_quota', { appid: sim.appId })).errcode, 41001, 'clear_quota needs a token')

  t.same(await post(sim, '/cgi-bin/clear_quota/v2', { appid: sim.appId, appsecret: sim.appSecret }), { errcode: 0, errmsg: 'ok' })
  t.equal((await stableToken(sim, true)).errcode, undefined, 'force refresh allowed again')
  const fresh = (await stableToken(sim)).access_token as string
  t.equal((await post(sim, '/cgi-bin/message/subscribe/send', MESSAGE, fresh)).errcode, 0, 'sends allowed again')

  for (let i = 2; i <= 10; i++) {
    const answer = i % 2 === 0 ? await post(sim, '/cgi-bin/clear_quota', { appid: sim.appId }, fresh) : await post(sim, '/cgi-bin/clear_quota/v2', { appid: sim.appId, appsecret: sim.appSecret })
    t.equal(answer.errcode, 0, `reset ${i}`)
  }
  t.match(await post(sim, '/cgi-bin/clear_quota/v2', { appid: sim.appId, appsecret: sim.appSecret }), { errcode: 48006, errmsg: /^forbid to clear quota because of reaching the limit/ })
  t.equal((await post(sim, '/cgi-bin/clear_quota', { appid: sim.appId }, fresh)).errcode, 48006, 'the two share the allowance')
  sim.clock.set(Date.UTC(2026, 2, 31, 16)) // 2026-04-01 00:00 China time
  t.equal((await post(sim, '/cgi-bin/clear_quota/v2', { appid: sim.appId, appsecret: sim.appSecret })).errcode, 0, 'a new month')
  sim.reset()
  t.match(await post(sim, '/cgi-bin/openapi/quota/get', { cgi_path: '/cgi-bin/message/subscribe/send' }, (await stableToken(sim)).access_token as string), { quota: { used: 0 } }, 'reset() forgets the counts')
})

test('createSimulator checks sendQuota', async (t) => {
  await t.rejects(createSimulator({ sendQuota: -1 }), { name: 'TypeError', message: /sendQuota must be an integer >= 0/ })
  await t.rejects(createSimulator({ sendQuota: 1.5 }), TypeError)
})

test('the plugin against a used-up daily quota: the send fails with 45009 (quota class, retryAfter), not retried', async (t) => {
  const sim = await startSimulator(t, { sendQuota: 1 })
  const app = await buildApp(t, sim)
  await app.wechat.send(shippedMessage())
  const before = sim.counters.send
  t.match(await app.wechat.send(shippedMessage()).catch((e) => e), { code: 'FST_WECHAT_API', errcode: 45009, errorClass: 'quota', retryAfter: Number })
  t.equal(sim.counters.send - before, 1, 'one call')
})
