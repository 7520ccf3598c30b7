import { test } from 'tap'
import type { Test } from 'tap'
import { request } from 'undici'
import { createSimulator, TOKEN_FORMAT } from '../lib/testing/index.js'
import type { WechatSimulator } from '../lib/testing/index.js'

const MIN = 60_000

async function call (url: string, init: { method?: 'GET' | 'POST', body?: string, type?: string } = {}) {
  const headers = init.type === undefined ? {} : { 'content-type': init.type }
  const res = await request(url, { method: init.method ?? 'GET', body: init.body, headers })
  const text = await res.body.text()
  return { status: res.statusCode, text, json: JSON.parse(text) }
}

async function start (t: Test, options?: Parameters<typeof createSimulator>[0]): Promise<WechatSimulator> {
  const sim = await createSimulator({ clock: { now: () => 0 }, ...options, logger: false })
  t.teardown(() => sim.close())
  return sim
}

const classic = async (sim: WechatSimulator, query?: string) =>
  call(`${sim.url}/cgi-bin/token?${query ?? `grant_type=client_credential&appid=${sim.appId}&secret=${sim.appSecret}`}`)

const stable = async (sim: WechatSimulator, body: Record<string, unknown> = {}) =>
  call(`${sim.url}/cgi-bin/stable_token`, {
    method: 'POST',
    type: 'application/json',
    body: JSON.stringify({ grant_type: 'client_credential', appid: sim.appId, secret: sim.appSecret, ...body })
  })

/** errcode of a business call (gettemplate) with this token; 0 when it works. */
const use = async (sim: WechatSimulator, token: string): Promise<number> =>
  (await call(`${sim.url}/wxaapi/newtmpl/gettemplate?access_token=${encodeURIComponent(token)}`)).json.errcode

test('classic token: success shape, a new token each call', async (t) => {
  const sim = await start(t, { clock: undefined })
  const a = await classic(sim)
  t.equal(a.status, 200)
  t.same(Object.keys(a.json), ['access_token', 'expires_in'], 'no errcode on success')
  t.equal(a.json.expires_in, 7200)
  t.ok(a.json.access_token.length >= 100)
  t.match(a.json.access_token, /^[A-Za-z0-9_-]+$/)
  t.match(a.json.access_token, TOKEN_FORMAT)
  const b = await classic(sim)
  t.not(b.json.access_token, a.json.access_token)
  t.equal(sim.tokenFetches().token, 2)
  t.equal(sim.currentToken('classic'), b.json.access_token)
})

test('classic token: credential errors in order, POST refused', async (t) => {
  const sim = await start(t)
  const id = `appid=${sim.appId}`
  const secret = `secret=${sim.appSecret}`
  const cases: Array<[string, number]> = [
    [`${id}&${secret}`, 40002],
    [`grant_type=authorization_code&${id}&${secret}`, 40002],
    [`grant_type=client_credential&${secret}`, 41002],
    [`grant_type=client_credential&appid=&${secret}`, 41002],
    [`grant_type=client_credential&appid=wxWRONG&${secret}`, 40013],
    [`grant_type=client_credential&${id}`, 41004],
    [`grant_type=client_credential&${id}&secret=nope`, 40125],
    [`grant_type=client_credential&${id}&secret=0123456789abcdef0123456789abcdef`, 40001],
    [`grant_type=client_credential&${id}&secret=nope&secret=${sim.appSecret}`, 40125],
    [`grant_type=client_credential&${id}&grant_type=x&secret=nope`, 40125]
  ]
  for (const [query, errcode] of cases) {
    t.equal((await classic(sim, query)).json.errcode, errcode, query)
  }
  const post = await call(`${sim.url}/cgi-bin/token?grant_type=client_credential&${id}&${secret}`, { method: 'POST' })
  t.equal(post.json.errcode, 43002)
  t.match(post.json.errmsg, /^require GET method,? rid: /, '43002, naming the method cgi-bin/token needs')
  t.equal(sim.tokenFetches().token, 0)
})

test('classic token: the previous token keeps working for 5 minutes', async (t) => {
  const sim = await start(t, { clock: undefined })
  const first = (await classic(sim)).json.access_token
  sim.clock.advance(10 * MIN)
  const second = (await classic(sim)).json.access_token
  t.equal(await use(sim, first), 0, 'old token still works right after the new fetch')
  sim.clock.advance(5 * MIN - 1)
  t.equal(await use(sim, first), 0, 'and until the end of the overlap')
  sim.clock.advance(1)
  t.equal(await use(sim, first), 40001, 'then it is superseded')
  t.equal(await use(sim, second), 0)
  sim.clock.advance(7200_000)
  t.equal(await use(sim, second), 42001, 'the new token expires after expires_in')
})

test('classic token: a previous token that expires inside the overlap gets 42001', async (t) => {
  const sim = await start(t, { clock: undefined })
  const first = (await classic(sim)).json.access_token
  sim.clock.advance(7200_000 - MIN)
  await classic(sim)
  sim.clock.advance(MIN)
  t.equal(await use(sim, first), 42001)
})

test('business calls: token missing, malformed, unknown', async (t) => {
  const sim = await start(t)
  t.equal((await call(`${sim.url}/wxaapi/newtmpl/gettemplate`)).json.errcode, 41001)
  t.equal(await use(sim, ''), 41001)
  t.equal(await use(sim, 'bogus'), 40014)
  t.equal(await use(sim, `86_${'A'.repeat(136)}`), 40001, 'well formed but never issued')
})

test('stable token: body must be JSON', async (t) => {
  const sim = await start(t)
  const url = `${sim.url}/cgi-bin/stable_token`
  const body = JSON.stringify({ grant_type: 'client_credential', appid: sim.appId, secret: sim.appSecret })
  t.equal((await call(url, { method: 'POST', body, type: 'text/plain' })).json.errcode, 41002)
  t.equal((await call(url, { method: 'POST', body })).json.errcode, 41002, 'no content type')
  t.equal((await call(url, { method: 'POST', body: `grant_type=client_credential&appid=${sim.appId}`, type: 'application/x-www-form-urlencoded' })).json.errcode, 41002)
  t.equal((await call(url, { method: 'POST', body: '{oops', type: 'application/json' })).json.errcode, 41002)
  t.equal((await call(url, { method: 'POST', body: '[]', type: 'application/json' })).json.errcode, 41002)
  t.equal((await call(url, { method: 'POST', type: 'application/json' })).json.errcode, 41002, 'empty body')
  t.equal((await call(url, { method: 'POST', body, type: 'application/json; charset=utf-8' })).json.expires_in, 7200)
  t.equal((await call(url)).json.errcode, 43002, 'GET refused')
})

test('stable token: credential errors', async (t) => {
  const sim = await start(t)
  t.equal((await stable(sim, { grant_type: 'x' })).json.errcode, 40002)
  t.equal((await stable(sim, { appid: undefined })).json.errcode, 41002)
  t.equal((await stable(sim, { appid: null })).json.errcode, 41002)
  t.equal((await stable(sim, { appid: 'wxother' })).json.errcode, 40013)
  t.equal((await stable(sim, { secret: '' })).json.errcode, 41004)
  t.equal((await stable(sim, { secret: 'wrong' })).json.errcode, 40125)
  // a secret shaped like a real one (32 hex digits) that is another app's: 40001 (WECHAT.md §0)
  t.equal((await stable(sim, { secret: '0123456789ABCDEF0123456789abcdef' })).json.errcode, 40001)
  t.equal((await stable(sim, { secret: '0123456789abcdef0123456789abcde' })).json.errcode, 40125, '31 digits')
  t.same(sim.tokenFetches(), { token: 0, stable_token: 0, force_refresh: 0 })
})

test('stable token: same token while > 5 minutes left, renewed in the last 5 minutes', async (t) => {
  const sim = await start(t, { clock: undefined })
  const a = await stable(sim)
  t.same(Object.keys(a.json), ['access_token', 'expires_in'])
  t.equal(a.json.expires_in, 7200)
  sim.clock.advance(1000 * 1000 + 500)
  const again = await stable(sim)
  t.equal(again.json.access_token, a.json.access_token, 'same token')
  t.equal(again.json.expires_in, 6199, 'expires_in is the remaining whole seconds')
  sim.clock.advance((6199 - 301) * 1000)
  t.equal((await stable(sim)).json.access_token, a.json.access_token, '301.5 s left: still the same')
  sim.clock.advance(1000)
  const last = await stable(sim)
  t.equal(last.json.access_token, a.json.access_token, '300.5 s left: still the same')
  t.equal(last.json.expires_in, 300)
  sim.clock.advance(500)
  const b = await stable(sim)
  t.not(b.json.access_token, a.json.access_token, 'last 5 minutes: a new token')
  t.equal(b.json.expires_in, 7200)
  t.equal(await use(sim, a.json.access_token), 0, 'the old one works until its own expiry')
  sim.clock.advance(300 * 1000)
  t.equal(await use(sim, a.json.access_token), 42001)
  t.equal(await use(sim, b.json.access_token), 0)
  t.equal(sim.tokenFetches().stable_token, 2)
  t.equal(sim.currentToken('stable'), b.json.access_token)
})

// Audit: with tokenTtlSeconds ≤ 300 every normal call issued a new token (the 5-minute window covered the whole lifetime).
test('stable token with a short tokenTtlSeconds: the same token until its last half', async (t) => {
  const sim = await start(t, { clock: undefined, tokenTtlSeconds: 120 })
  const a = await stable(sim)
  t.equal(a.json.expires_in, 120)
  t.equal((await stable(sim)).json.access_token, a.json.access_token, 'called again at once: the same token')
  sim.clock.advance(59_000)
  t.equal((await stable(sim)).json.access_token, a.json.access_token, '61 s left: the same')
  sim.clock.advance(1000)
  const b = await stable(sim)
  t.not(b.json.access_token, a.json.access_token, '60 s left: a new token')
  t.equal(b.json.expires_in, 120)
  t.equal(await use(sim, a.json.access_token), 0, 'the old one works until its own expiry')
  t.equal(sim.tokenFetches().stable_token, 2)
})

test('stable token: every token returned has expires_in >= 300', async (t) => {
  const sim = await start(t, { clock: undefined })
  for (let i = 0; i < 40; i++) {
    const res = await stable(sim)
    t.ok(res.json.expires_in >= 300, `call ${i}: ${res.json.expires_in}`)
    sim.clock.advance(7 * MIN + 13_000)
  }
})

test('stable token: force refresh kills the previous token, 30 s apart, 20 a day', async (t) => {
  // 2026-03-01 00:00 China time (UTC+8)
  const sim = await start(t, { clock: undefined })
  sim.clock.set(Date.UTC(2026, 1, 28, 16, 0, 0))
  const first = (await stable(sim)).json.access_token
  const forced = await stable(sim, { force_refresh: true })
  t.not(forced.json.access_token, first)
  t.equal(forced.json.expires_in, 7200)
  t.equal(await use(sim, first), 40001, 'the previous stable token is dead at once')
  t.same(sim.tokenFetches(), { token: 0, stable_token: 1, force_refresh: 1 })

  sim.clock.advance(29_999)
  const early = await stable(sim, { force_refresh: true })
  t.equal(early.json.access_token, forced.json.access_token, 'under 30 s: the current token, no refresh')
  t.equal(await use(sim, forced.json.access_token), 0)
  t.equal(sim.tokenFetches().force_refresh, 1)

  t.equal((await stable(sim, { force_refresh: 'true' })).json.access_token, forced.json.access_token,
    'only the boolean true forces')

  for (let i = 2; i <= 20; i++) {
    sim.clock.advance(30_000)
    t.equal((await stable(sim, { force_refresh: true })).json.expires_in, 7200)
  }
  t.equal(sim.tokenFetches().force_refresh, 20)
  const current = sim.currentToken('stable') as string
  sim.clock.advance(30_000)
  const over = await stable(sim, { force_refresh: true })
  t.equal(over.json.errcode, 45009)
  t.match(over.json.errmsg, /^reach max api daily quota limit/)
  t.equal(await use(sim, current), 0, 'a refused force refresh kills nothing')
  t.equal((await stable(sim)).json.access_token, current, 'normal mode still works')

  sim.clock.set(Date.UTC(2026, 2, 1, 15, 59, 59))
  t.equal((await stable(sim, { force_refresh: true })).json.errcode, 45009, 'same China day')
  sim.clock.advance(1000)
  t.equal((await stable(sim, { force_refresh: true })).json.expires_in, 7200, 'a new China day')
})

test('stable token: force refresh also kills the overlapping old token', async (t) => {
  const sim = await start(t, { clock: undefined })
  const a = (await stable(sim)).json.access_token
  sim.clock.advance(7200_000 - 100_000)
  const b = (await stable(sim)).json.access_token
  t.not(a, b)
  const c = (await stable(sim, { force_refresh: true })).json.access_token
  t.equal(await use(sim, a), 40001)
  t.equal(await use(sim, b), 40001)
  t.equal(await use(sim, c), 0)
})

test('classic and stable tokens are isolated', async (t) => {
  const sim = await start(t, { clock: undefined })
  const s = (await stable(sim)).json.access_token
  const c1 = (await classic(sim)).json.access_token
  await classic(sim)
  sim.clock.advance(6 * MIN)
  t.equal(await use(sim, s), 0, 'classic fetches never touch the stable token')
  t.equal(await use(sim, c1), 40001)
  const c3 = (await classic(sim)).json.access_token
  await stable(sim, { force_refresh: true })
  t.equal(await use(sim, c3), 0, 'a force refresh never touches the classic token')
  t.equal(await use(sim, s), 40001)
})

test('expireTokens: 42001 for every token, then a normal stable call issues a new one', async (t) => {
  const sim = await start(t)
  const s = (await stable(sim)).json.access_token
  const c = (await classic(sim)).json.access_token
  sim.expireTokens()
  t.equal(await use(sim, s), 42001)
  t.equal(await use(sim, c), 42001)
  const fresh = await stable(sim)
  t.not(fresh.json.access_token, s)
  t.equal(fresh.json.expires_in, 7200)
  t.equal(await use(sim, fresh.json.access_token), 0)
  t.equal(sim.tokenFetches().stable_token, 2)
})

test('invalidateTokens: 40001 for every token, then a normal stable call issues a new one', async (t) => {
  const sim = await start(t)
  const s = (await stable(sim)).json.access_token
  const c = (await classic(sim)).json.access_token
  sim.invalidateTokens()
  t.equal(await use(sim, s), 40001)
  t.equal(await use(sim, c), 40001)
  const fresh = (await stable(sim)).json.access_token
  t.not(fresh, s)
  t.equal(await use(sim, fresh), 0)
  sim.expireTokens()
  t.equal(await use(sim, s), 40001, 'whichever came first decides')
})
