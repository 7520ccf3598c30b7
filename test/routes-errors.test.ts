import { test } from 'tap'
import type { Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { SECRET, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { WechatInvalidMessageError, WechatNoCreditError, WechatOptionsError, WechatQueueError } from '../lib/errors.js'
import { INTERNAL_MESSAGE, itemError, mapError } from '../lib/http/route-errors.js'
import { BATCH_BODY_LIMIT, MESSAGE_BODY_LIMIT } from '../lib/http/routes.js'
import { MAX_BATCH } from '../lib/http/schemas.js'
import { call, postJson, routesApp } from './routes-helpers.js'

const json = { 'content-type': 'application/json' }

function assertClientError (t: Test, res: LightMyRequestResponse, status: number, label: string): void {
  t.equal(res.statusCode, status, label)
  const body = res.json()
  t.equal(body.statusCode, status, `${label}: statusCode in the body`)
  t.type(body.code, 'string', `${label}: a code`)
  t.ok(typeof body.message === 'string' && body.message.length > 0, `${label}: a message (${body.message})`)
}

test('bad bodies are 400 with a message, never 500', async (t) => {
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
    ['a lone surrogate in the idempotencyKey', { ...valid, idempotencyKey: 'order-\ud800' }, /idempotencyKey must be well-formed Unicode/],
    ['a value over the keyword rule', { ...valid, data: { ...valid.data, thing2: 'x'.repeat(40) } }, /data\.thing2 must be at most 20 characters/]
  ]
  for (const [label, body, message] of cases) {
    const res = await postJson(app, '/wechat/messages', body)
    assertClientError(t, res, 400, label)
    t.match(res.json().message, message, label)
  }
  const many = (await postJson(app, '/wechat/messages', { a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7 })).json()
  t.equal(many.message.split(', ').length, 5, 'at most five problems are listed')
  const rules = (await postJson(app, '/wechat/messages', cases[11][1])).json()
  t.match(rules, { code: 'FST_WECHAT_INVALID_MESSAGE', violations: [{ key: 'data.thing2', rule: 'thing.maxLength' }] }, 'keyword rules name the field and the rule')

  const notJson = /^body must be JSON \(application\/json\)$/
  const raw: [string, Record<string, string>, string, RegExp][] = [
    ['invalid JSON', json, '{"toUser": ', /JSON/],
    ['an empty JSON body', json, '', /empty/],
    ['prototype poisoning', json, '{"__proto__": {"admin": true}}', /./],
    ['text/plain', { 'content-type': 'text/plain' }, 'send it please', notJson],
    ['text/plain holding JSON', { 'content-type': 'text/plain; charset=utf-8' }, JSON.stringify(valid), notJson],
    ['a form', { 'content-type': 'application/x-www-form-urlencoded' }, 'toUser=x', notJson],
    ['XML', { 'content-type': 'application/xml' }, '<xml/>', notJson],
    ['text/xml', { 'content-type': 'text/xml' }, '<xml/>', notJson],
    ['a body without a content-type', {}, JSON.stringify(valid), notJson],
    ['a bad content-type header', { 'content-type': ';;;' }, '{}', notJson],
    ['a body of 70 KB', json, JSON.stringify({ ...valid, page: 'x'.repeat(70_000) }), new RegExp(`^body too large \\(limit ${MESSAGE_BODY_LIMIT} bytes\\)$`)]
  ]
  const codes: Record<string, string> = {}
  for (const [label, headers, payload, message] of raw) {
    const res = await call(app, 'POST', '/wechat/messages', { headers, payload })
    assertClientError(t, res, 400, label)
    t.match(res.json(), { error: 'Bad Request', message }, label)
    codes[label] = res.json().code
  }
  t.equal(codes['a form'], 'FST_ERR_CTP_INVALID_MEDIA_TYPE', 'Fastify\'s code is kept')
  t.equal(codes['a body of 70 KB'], 'FST_ERR_CTP_BODY_TOO_LARGE', 'Fastify\'s code is kept')
  const tooLarge = new RegExp(`^body too large \\(limit ${BATCH_BODY_LIMIT} bytes\\)$`)
  // 500 messages and an unknown field that pads the body to a given size in bytes;
  // the unknown field makes a body within the limit fail the schema, so nothing is queued.
  const batchOf = (bytes: number): string => {
    const messages = Array.from({ length: MAX_BATCH }, () => valid)
    const pad = bytes - Buffer.byteLength(JSON.stringify({ messages, padding: '' }))
    return JSON.stringify({ messages, padding: 'x'.repeat(pad) })
  }
  const atLimit = await call(app, 'POST', '/wechat/messages/batch', { headers: json, payload: batchOf(BATCH_BODY_LIMIT) })
  assertClientError(t, atLimit, 400, 'a batch body of exactly the limit')
  t.match(atLimit.json(), { code: 'FST_ERR_VALIDATION', message: /padding is not a known field/ }, 'the limit itself is read (and fails the schema)')
  const over = batchOf(BATCH_BODY_LIMIT + 1)
  t.equal(Buffer.byteLength(over), BATCH_BODY_LIMIT + 1, 'a batch body one byte over the limit')
  const overBatch = await call(app, 'POST', '/wechat/messages/batch', { headers: json, payload: over })
  assertClientError(t, overBatch, 400, 'a batch body over the limit')
  t.match(overBatch.json(), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', error: 'Bad Request', message: tooLarge })
  for (const [label, headers, payload] of [['text/plain', { 'content-type': 'text/plain' }, 'send them'], ['a form', { 'content-type': 'application/x-www-form-urlencoded' }, 'messages=x']] as const) {
    const res = await call(app, 'POST', '/wechat/messages/batch', { headers, payload })
    assertClientError(t, res, 400, `${label} to /messages/batch`)
    t.match(res.json(), { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', error: 'Bad Request', message: notJson }, `${label} to /messages/batch`)
  }
  const huge = JSON.stringify({ messages: [{ ...valid, page: 'x'.repeat(5 * 1024 * 1024) }] })
  assertClientError(t, await call(app, 'POST', '/wechat/messages/batch', { headers: json, payload: huge }), 400, '5 MB to /messages/batch')
  assertClientError(t, await call(app, 'POST', '/wechat/messages', { headers: json, payload: huge }), 400, '5 MB to /messages')
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

test('FST_WECHAT_API is 502: 45011 and 45009 with Retry-After, -1, a token rejected after the retry; token and network failures are 503, 504', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  sim.failNext('send', { errcode: 45011 })
  const rate = await postJson(app, '/wechat/messages', shippedMessage())
  t.equal(rate.statusCode, 502)
  t.equal(rate.headers['retry-after'], '60')
  t.match(rate.json(), { statusCode: 502, code: 'FST_WECHAT_API', error: 'Bad Gateway', errcode: 45011, errmsg: /minute-quota/ })

  sim.failNext('send', { errcode: 45009 })
  const quota = await postJson(app, '/wechat/messages', shippedMessage())
  t.equal(quota.statusCode, 502)
  t.match(quota.json(), { statusCode: 502, code: 'FST_WECHAT_API', error: 'Bad Gateway', errcode: 45009, errmsg: /./ })
  const wait = Number(quota.headers['retry-after'])
  t.ok(wait > 0 && wait <= 86_400, `until midnight in China (${wait} s)`)
  // (the 45009 paused sending until the quota resets: as after a clear_quota, resumed)
  await app.wechat.resumeQueue()

  sim.failNext('send', { errcode: -1 }, 3)
  t.match((await postJson(app, '/wechat/messages', shippedMessage())).json(), { statusCode: 502, errcode: -1 })

  // (refused, retried with the token WeChat hands out again, refused, force-refreshed, refused)
  sim.failNext('send', { errcode: 40001 }, 3)
  const rejected = await postJson(app, '/wechat/messages', shippedMessage())
  t.equal(rejected.statusCode, 502, '40001 again after the retries')
  t.match(rejected.json(), { statusCode: 502, code: 'FST_WECHAT_API', error: 'Bad Gateway', errcode: 40001, errmsg: /./ })
  t.equal(rejected.headers['retry-after'], undefined, 'no Retry-After for a rejected token')

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
  for (const [fault, times] of [[{ errcode: 40003 }, 1], [{ errcode: 45011 }, 1], [{ httpStatus: 500 }, 3], [{ errcode: 40001 }, 3]] as const) {
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
  const logs = captureLogs('warn')
  const app = await routesApp(t, sim, { logger: logs.logger, plugin: { queue: false } })
  const one = await postJson(app, '/wechat/messages?queue=true', shippedMessage())
  t.match(one.json(), { statusCode: 503, code: 'FST_WECHAT_QUEUE' })
  // logged as what it is, not as an "upstream failure" (WeChat was never called)
  t.ok(logs.lines.some((line) => line.includes('wechat routes: the queue is unavailable')), 'logged as the queue being unavailable')
  t.notOk(logs.lines.some((line) => line.includes('upstream failure')))
  const batch = await postJson(app, '/wechat/messages/batch', { messages: [shippedMessage()] })
  t.match(batch.json(), { statusCode: 503, code: 'FST_WECHAT_QUEUE', message: /queue is off/ })
  t.equal((await postJson(app, '/wechat/messages', shippedMessage())).statusCode, 200, 'sending now still works')
})

test('mapError: coded errors keep their status, anything else is a 500 that says nothing', async (t) => {
  t.match(mapError(new WechatNoCreditError('no credit for that template'), 0), { statusCode: 409, level: 'info', body: { code: 'FST_WECHAT_NO_CREDIT' } })
  t.match(mapError(new WechatQueueError('down'), 0), { statusCode: 503, level: 'warn' })
  t.match(mapError(new WechatOptionsError('x'), 0), { statusCode: 500, level: 'error' })
  t.match(mapError(Object.assign(new WechatInvalidMessageError('bad'), { violations: [{ key: 'k', rule: 'r', message: 'm' }] }), 0).body, { violations: [{ key: 'k' }] })
  t.match(mapError(Object.assign(new Error('x'), { code: 'FST_WECHAT_API', errorClass: 'rate', retryAfter: 1500 }), 0), { statusCode: 502, retryAfter: 2, level: 'warn' })
  t.match(mapError(Object.assign(new Error('x'), { code: 'FST_WECHAT_API', errorClass: 'rate' }), 0), { statusCode: 502, retryAfter: 60 })
  t.match(mapError(Object.assign(new Error('x'), { code: 'FST_WECHAT_API', errorClass: 'quota' }), 0), { statusCode: 502, body: { statusCode: 502, error: 'Bad Gateway' } })
  t.ok((mapError(Object.assign(new Error('x'), { code: 'FST_WECHAT_API', errorClass: 'quota' }), 0).retryAfter ?? 0) > 0, 'quota: Retry-After')
  t.match(mapError(Object.assign(new Error('x'), { code: 'FST_WECHAT_API', errorClass: 'token' }), 0), { statusCode: 502, retryAfter: undefined })
  t.match(mapError(Object.assign(new Error('x'), { code: 'FST_WECHAT_API', errorClass: 'permanent' }), 0), { statusCode: 422 })
  t.match(mapError(Object.assign(new Error('x'), { code: 'FST_WECHAT_API', errorClass: 'permanent' }), 0, { refusalStatus: 502 }), { statusCode: 502 })
  t.same(mapError(Object.assign(new Error('Request body is too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }), 0, { bodyLimit: 1024 }),
    { statusCode: 400, body: { statusCode: 400, code: 'FST_ERR_CTP_BODY_TOO_LARGE', error: 'Bad Request', message: 'body too large (limit 1024 bytes)' }, level: 'info' })
  t.same(mapError(Object.assign(new Error('Unsupported Media Type'), { code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', statusCode: 415 }), 0).body,
    { statusCode: 400, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', error: 'Bad Request', message: 'body must be JSON (application/json)' })
  t.match(mapError(Object.assign(new Error('mine'), { code: 'MY_HOOK', statusCode: 415 }), 0), { statusCode: 415, body: { code: 'MY_HOOK', message: 'mine' } }, 'a hook\'s own 415 is kept')
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
