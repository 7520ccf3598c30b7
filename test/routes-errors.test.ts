import { test } from 'tap'
import type { Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { SECRET, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { WechatInvalidMessageError, WechatNoCreditError, WechatOptionsError, WechatQueueError } from '../lib/errors.js'
import { INTERNAL_MESSAGE, itemError, mapError } from '../lib/http/route-errors.js'
import { call, postJson, routesApp } from './routes-helpers.js'

const json = { 'content-type': 'application/json' }

function assertClientError (t: Test, res: LightMyRequestResponse, status: number, label: string): void {
  t.equal(res.statusCode, status, label)
  const body = res.json()
  t.equal(body.statusCode, status, `${label}: statusCode in the body`)
  t.type(body.code, 'string', `${label}: a code`)
  t.ok(typeof body.message === 'string' && body.message.length > 0, `${label}: a message (${body.message})`)
}

test('bad bodies are 4xx with a message, never 500', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const valid = shippedMessage()
  const cases: [string, unknown, RegExp][] = [
    ['toUser of the wrong type', { ...valid, toUser: 123 }, /body\/toUser Expected string/],
    ['a keyword value of the wrong type', { ...valid, data: { thing2: { value: { deep: 1 } } } }, /body\/data\/thing2 has the wrong type/],
    ['an unknown field', { ...valid, touser: 'x' }, /body\/touser is not a known field/],
    ['a missing field', { toUser: valid.toUser, data: valid.data }, /body\/templateId is required/],
    ['an empty data', { ...valid, data: {} }, /body\/data/],
    ['a wrong enum', { ...valid, lang: 'fr_FR' }, /body\/lang/],
    ['an array instead of a message', [valid], /body Expected object/],
    ['null', null, /body Expected object/],
    ['a JSON string', 'hello', /body Expected object/],
    ['an empty idempotencyKey', { ...valid, idempotencyKey: '' }, /body\/idempotencyKey/],
    ['a value over the keyword rule', { ...valid, data: { ...valid.data, thing2: 'x'.repeat(40) } }, /data\.thing2 must be at most 20 characters/]
  ]
  for (const [label, body, message] of cases) {
    const res = await postJson(app, '/wechat/messages', body)
    assertClientError(t, res, 400, label)
    t.match(res.json().message, message, label)
  }
  const many = (await postJson(app, '/wechat/messages', { a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7 })).json()
  t.equal(many.message.split(', ').length, 5, 'at most five problems are listed')
  const rules = (await postJson(app, '/wechat/messages', cases[10][1])).json()
  t.match(rules, { code: 'FST_WECHAT_INVALID_MESSAGE', violations: [{ key: 'data.thing2', rule: 'thing.maxLength' }] }, 'keyword rules name the field and the rule')

  const raw: [string, Record<string, string>, string, number][] = [
    ['invalid JSON', json, '{"toUser": ', 400],
    ['an empty JSON body', json, '', 400],
    ['prototype poisoning', json, '{"__proto__": {"admin": true}}', 400],
    ['text/plain', { 'content-type': 'text/plain' }, 'send it please', 400],
    ['a form', { 'content-type': 'application/x-www-form-urlencoded' }, 'toUser=x', 415],
    ['XML', { 'content-type': 'application/xml' }, '<xml/>', 415],
    ['a bad content-type header', { 'content-type': ';;;' }, '{}', 415],
    ['a body of 70 KB', json, JSON.stringify({ ...valid, page: 'x'.repeat(70_000) }), 413]
  ]
  for (const [label, headers, payload, status] of raw) {
    assertClientError(t, await call(app, 'POST', '/wechat/messages', { headers, payload }), status, label)
  }
  const huge = JSON.stringify({ messages: [{ ...valid, page: 'x'.repeat(5 * 1024 * 1024) }] })
  assertClientError(t, await call(app, 'POST', '/wechat/messages/batch', { headers: json, payload: huge }), 413, '5 MB to /messages/batch')
  assertClientError(t, await call(app, 'POST', '/wechat/messages', { headers: json, payload: huge }), 413, '5 MB to /messages')
  for (const query of ['queue=maybe', 'queue=true&queue=false', 'unknown=1']) {
    assertClientError(t, await postJson(app, `/wechat/messages?${query}`, valid), 400, `?${query}`)
  }
  t.equal(sim.counters.send, 0, 'nothing reached WeChat')
})

test('WeChat permanent errors are 422 with errcode and errmsg; the failed message is recorded', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  for (const errcode of [40003, 40037, 43101, 47003]) {
    sim.failNext('send', { errcode, errmsg: `refused ${errcode}` })
    const res = await postJson(app, '/wechat/messages', shippedMessage())
    t.equal(res.statusCode, 422, `${errcode}`)
    const body = res.json()
    t.match(body, { statusCode: 422, code: 'FST_WECHAT_API', error: 'Unprocessable Entity', errcode, errmsg: `refused ${errcode}`, outcome: 'failed', message: new RegExp(`errcode ${errcode}`) })
    const record = (await call(app, 'GET', `/wechat/messages/${body.id}`)).json()
    t.match(record, { status: 'failed', errcode })
  }
})

test('45011 and 45009 are 429 with Retry-After; -1, token and network failures are 502, 503, 504', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  sim.failNext('send', { errcode: 45011 })
  const rate = await postJson(app, '/wechat/messages', shippedMessage())
  t.equal(rate.statusCode, 429)
  t.equal(rate.headers['retry-after'], '60')
  t.match(rate.json(), { code: 'FST_WECHAT_API', errcode: 45011, errmsg: /minute-quota/ })

  sim.failNext('send', { errcode: 45009 })
  const quota = await postJson(app, '/wechat/messages', shippedMessage())
  t.equal(quota.statusCode, 429)
  const wait = Number(quota.headers['retry-after'])
  t.ok(wait > 0 && wait <= 86_400, `until midnight in China (${wait} s)`)

  sim.failNext('send', { errcode: -1 }, 3)
  t.match((await postJson(app, '/wechat/messages', shippedMessage())).json(), { statusCode: 502, errcode: -1 })

  sim.failNext('send', { errcode: 40001 }, 2)
  t.match((await postJson(app, '/wechat/messages', shippedMessage())).json(), { statusCode: 503, errcode: 40001 })

  sim.failNext('send', { httpStatus: 502 }, 3)
  const upstream = await postJson(app, '/wechat/messages', shippedMessage())
  t.equal(upstream.statusCode, 504)
  t.match(upstream.json(), { code: 'FST_WECHAT_UPSTREAM', outcome: 'unknown', error: 'Gateway Timeout' })

  sim.invalidateTokens()
  sim.failNext('stable_token', { errcode: 40125, errmsg: `invalid appsecret ${SECRET}` }, 5)
  const token = await postJson(app, '/wechat/messages', shippedMessage())
  t.equal(token.statusCode, 503)
  t.match(token.json(), { code: 'FST_WECHAT_TOKEN', errcode: 40125 })
  t.notMatch(token.body, SECRET, 'the secret WeChat echoed is not passed on')
})

test('no response carries the appSecret or the access_token', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs('info')
  const app = await routesApp(t, sim, { logger: logs.logger })
  const accessToken = await app.wechat.getToken()
  const bodies: string[] = []
  for (const [fault, times] of [[{ errcode: 40003 }, 1], [{ errcode: 45011 }, 1], [{ httpStatus: 500 }, 3], [{ errcode: 40001 }, 2]] as const) {
    sim.failNext('send', fault, times)
    const res = await postJson(app, '/wechat/messages', shippedMessage())
    t.ok(res.statusCode >= 422, `${JSON.stringify(fault)} → ${res.statusCode}`)
    bodies.push(res.body)
  }
  bodies.push((await call(app, 'GET', '/wechat/stats')).body, (await call(app, 'GET', '/wechat/dashboard')).body)
  for (const body of bodies) {
    t.notOk(body.includes(SECRET), 'no appSecret')
    t.notOk(body.includes(accessToken), 'no access_token')
  }
  t.ok(logs.lines.some((line) => line.includes('wechat routes: upstream failure')), 'upstream failures are logged as warnings')
})

test('queue: false → the queued forms answer 503 FST_WECHAT_QUEUE', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim, { plugin: { queue: false } })
  const one = await postJson(app, '/wechat/messages?queue=true', shippedMessage())
  t.match(one.json(), { statusCode: 503, code: 'FST_WECHAT_QUEUE' })
  const batch = await postJson(app, '/wechat/messages/batch', { messages: [shippedMessage()] })
  t.match(batch.json(), { statusCode: 503, code: 'FST_WECHAT_QUEUE', message: /queue is off/ })
  t.equal((await postJson(app, '/wechat/messages', shippedMessage())).statusCode, 200, 'sending now still works')
})

test('mapError: coded errors keep their status, anything else is a 500 that says nothing', async (t) => {
  t.match(mapError(new WechatNoCreditError('no credit for that template'), 0), { statusCode: 409, level: 'info', body: { code: 'FST_WECHAT_NO_CREDIT' } })
  t.match(mapError(new WechatQueueError('down'), 0), { statusCode: 503, level: 'warn' })
  t.match(mapError(new WechatOptionsError('x'), 0), { statusCode: 500, level: 'error' })
  t.match(mapError(Object.assign(new WechatInvalidMessageError('bad'), { violations: [{ key: 'k', rule: 'r', message: 'm' }] }), 0).body, { violations: [{ key: 'k' }] })
  t.match(mapError(Object.assign(new Error('x'), { code: 'FST_WECHAT_API', errorClass: 'rate', retryAfter: 1500 }), 0), { statusCode: 429, retryAfter: 2 })
  t.match(mapError(Object.assign(new Error('x'), { code: 'FST_WECHAT_API', errorClass: 'rate' }), 0), { retryAfter: 60 })
  t.match(mapError(Object.assign(new Error('x'), { code: 'FST_WECHAT_CUSTOM' }), 0), { statusCode: 500 })
  t.match(mapError(Object.assign(new Error('I am a teapot'), { statusCode: 418 }), 0), { statusCode: 418, level: 'info', body: { code: 'FST_ERR_BAD_REQUEST', error: 'I\'m a Teapot', message: 'I am a teapot' } })
  t.match(mapError(Object.assign(new Error('odd'), { statusCode: 499 }), 0).body, { error: 'Error' }, 'a status without a name')
  for (const thrown of [new TypeError('secret detail'), null, 'a string', Object.assign(new Error('secret detail'), { statusCode: 503 })]) {
    t.same(mapError(thrown, 0), { statusCode: 500, body: { statusCode: 500, code: 'FST_WECHAT_INTERNAL', error: 'Internal Server Error', message: INTERNAL_MESSAGE }, level: 'error' })
  }
  const lines: string[] = []
  const log = { error: (obj: unknown, msg: string) => { lines.push(msg) } } as never
  t.same(itemError(new TypeError('secret detail'), log), { code: 'FST_WECHAT_INTERNAL', message: INTERNAL_MESSAGE })
  t.same(itemError(null, log), { code: 'FST_WECHAT_INTERNAL', message: INTERNAL_MESSAGE })
  t.equal(lines.length, 2, 'both logged')
})
