import { test } from 'tap'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import { startSimulator } from './helpers/app.js'
import { call, routesApp } from './routes-helpers.js'

test('GET {prefix}/credits/:openid answers the ledger; bad openids are a 400; the auth hook guards it', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim, { plugin: { credits: 'track' } })
  const empty = await call(app, 'GET', '/wechat/credits/oUser-routes-0001')
  t.equal(empty.statusCode, 200)
  t.same(empty.json(), { openid: 'oUser-routes-0001', credits: {} })

  const unauthorised = await app.inject({ method: 'GET', url: '/wechat/credits/oUser-routes-0001' })
  t.equal(unauthorised.statusCode, 401)
  const bad = await call(app, 'GET', '/wechat/credits/has%20space')
  t.equal(bad.statusCode, 400)
})

test('GET {prefix}/templates lists the account templates, cached or fresh', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const res = await call(app, 'GET', '/wechat/templates')
  t.equal(res.statusCode, 200)
  const ids = (res.json() as { templates: { priTmplId: string }[] }).templates.map((tpl) => tpl.priTmplId)
  t.ok(ids.includes(DEMO_TEMPLATE_IDS.orderShipped))
  const before = sim.counters.gettemplate
  t.equal((await call(app, 'GET', '/wechat/templates')).statusCode, 200)
  t.equal(sim.counters.gettemplate, before, 'served from the cache')
  t.equal((await call(app, 'GET', '/wechat/templates?refresh=true')).statusCode, 200)
  t.equal(sim.counters.gettemplate, before + 1, 'refresh=true asks WeChat')
  t.equal((await call(app, 'GET', '/wechat/templates?refresh=maybe')).statusCode, 400)
})

test('GET {prefix}/templates: WeChat refusing the list is a 502 (not 422: the caller sent no message); rate limit 502 with Retry-After', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  sim.failNext('gettemplate', { errcode: 48001 })
  const refused = await call(app, 'GET', '/wechat/templates?refresh=true')
  t.equal(refused.statusCode, 502)
  t.match(refused.json(), { statusCode: 502, code: 'FST_WECHAT_API', error: 'Bad Gateway', errcode: 48001, rid: /^[0-9a-f]{8}-/ })
  sim.failNext('gettemplate', { errcode: 45011 })
  const limited = await call(app, 'GET', '/wechat/templates?refresh=true')
  t.equal(limited.statusCode, 502)
  t.equal(limited.headers['retry-after'], '60')
  t.match(limited.json(), { statusCode: 502, code: 'FST_WECHAT_API', error: 'Bad Gateway', errcode: 45011 })
})
