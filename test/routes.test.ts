import { test } from 'tap'
import Fastify from 'fastify'
import fastifySwagger from '@fastify/swagger'
import wechatPush from '../lib/index.js'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { AUTH, bearerAuth, call, postJson, routesApp, waitFor } from './routes-helpers.js'

const ROUTES = [
  ['POST', '/wechat/messages'],
  ['POST', '/wechat/messages/batch'],
  ['GET', '/wechat/messages/some-id'],
  ['GET', '/wechat/stats'],
  ['GET', '/wechat/dashboard']
] as const

test('routes without an auth hook refuse to boot, unless unprotected', async (t) => {
  const sim = await startSimulator(t)
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, routes: { prefix: '/wechat' } })
  await t.rejects(async () => app.ready(), { code: 'FST_WECHAT_OPTIONS', message: /routes needs an auth hook/ })

  const logs = captureLogs('warn')
  const open = await buildApp(t, sim, { logger: logs.logger, plugin: { routes: { unprotected: true } } })
  t.ok(logs.lines.some((line) => line.includes('routes are exposed without an auth hook')), 'and says so at boot')
  const res = await open.inject({ method: 'GET', url: '/wechat/stats' })
  t.equal(res.statusCode, 200, 'unprotected: true exposes them without credentials')
})

test('routes are off by default; dashboard: false leaves out only the page', async (t) => {
  const sim = await startSimulator(t)
  const plain = await buildApp(t, sim)
  t.equal((await call(plain, 'GET', '/wechat/stats')).statusCode, 404)
  const noPage = await routesApp(t, sim, { routes: { dashboard: false } })
  t.equal((await call(noPage, 'GET', '/wechat/stats')).statusCode, 200)
  t.equal((await call(noPage, 'GET', '/wechat/dashboard')).statusCode, 404)
})

test('missing or wrong credentials: the user\'s hook answers 401 on every route, and nothing is sent', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  for (const [method, url] of ROUTES) {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 's3cret' }]) {
      const res = await app.inject({ method, url, headers, payload: method === 'POST' ? shippedMessage() : undefined })
      t.equal(res.statusCode, 401, `${method} ${url} ${JSON.stringify(headers)}`)
      t.same(res.json(), { statusCode: 401, error: 'Unauthorized', message: 'a valid Bearer token is required' }, 'the hook\'s own body, untouched')
    }
  }
  t.equal(sim.counters.send, 0)
  t.equal((await app.wechat.stats()).total, 0, 'nothing was recorded either')
})

// Audit: Fastify's own 404 under the prefix ran none of the user's hooks, so a stranger told routes
// (401) from non-routes (404). Failed before (404 without credentials).
test('a path under the prefix that is no route is guarded too: 401 without credentials, 404 with them', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  for (const [method, url] of [['GET', '/wechat/nope'], ['GET', '/wechat'], ['GET', '/wechat/'], ['PUT', '/wechat/messages'], ['POST', '/wechat/stats'], ['DELETE', '/wechat/messages/x']] as const) {
    t.equal((await app.inject({ method, url })).statusCode, 401, `${method} ${url} without credentials`)
    const found = await app.inject({ method, url, headers: { authorization: AUTH } })
    t.equal(found.statusCode, 404, `${method} ${url} with them`)
    t.match(found.json(), { statusCode: 404, code: 'FST_ERR_NOT_FOUND', error: 'Not Found' }, 'the error shape, code included')
  }
  t.equal((await app.inject({ method: 'GET', url: '/elsewhere' })).statusCode, 404, 'outside the prefix: the app\'s own 404, no hook')
})

// Review: with routes.prefix '/' inside an app plugin with its own prefix and 404 handler, the guard
// looked at the full prefix and set our 404 handler on the app plugin's level: boot failed ("Not
// found handler already set"). Failed before.
test('routes at prefix \'/\' inside an app plugin with its own 404 handler: both boot, the app\'s 404 stays the app\'s', async (t) => {
  const sim = await startSimulator(t)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(async (api) => {
    api.setNotFoundHandler((_request, reply) => { reply.code(404).send({ mine: true }) })
    await api.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, routes: { prefix: '/', onRequest: bearerAuth } })
  }, { prefix: '/api' })
  await app.ready()
  t.same((await app.inject({ method: 'GET', url: '/api/nope' })).json(), { mine: true })
  t.equal((await app.inject({ method: 'GET', url: '/api/stats' })).statusCode, 401, 'our routes still guarded')
})

// A rate-limit hook's 429, a maintenance 503, a 400 of the hook's own: the routes' response schemas
// turned them into 500s ("statusCode" is required) or stripped their fields. Failed before.
test('whatever status and body the user\'s hook answers with pass through untouched, on every route', async (t) => {
  const sim = await startSimulator(t)
  const answers = [
    [400, { reason: 'bad tenant header' }],
    [429, { statusCode: 429, error: 'Too Many Requests', message: 'slow down', retryIn: 30, limit: 10 }],
    [503, { maintenance: true }],
    [500, { oops: 1 }],
    [200, { cached: 'from the hook' }]
  ] as const
  for (const where of ['onRequest', 'preHandler'] as const) {
    const hook = async (request: { headers: Record<string, unknown> }, reply: { code: (n: number) => { send: (b: unknown) => unknown } }): Promise<unknown> => {
      const answer = answers[Number(request.headers['x-answer'])]
      if (answer !== undefined) return reply.code(answer[0]).send(answer[1])
    }
    const app = await routesApp(t, sim, { routes: { [where]: hook } as never })
    for (const [method, url] of [...ROUTES, ['GET', '/wechat/templates'], ['GET', '/wechat/credits/oUser1']] as const) {
      for (const [i, [status, body]] of answers.entries()) {
        const res = await app.inject({ method, url, headers: { authorization: AUTH, 'x-answer': String(i) }, payload: method === 'POST' ? (url.endsWith('batch') ? { messages: [shippedMessage()] } : shippedMessage()) : undefined })
        t.equal(res.statusCode, status, `${where} ${method} ${url} ${status}`)
        t.same(res.json(), body, `${where} ${method} ${url} ${status}: the hook's body`)
      }
    }
  }
  t.equal(sim.counters.send, 0, 'nothing was sent')
})

// An audit: a hook that throws (as @fastify/rate-limit does: its 429 with its own fields) had its error
// rewritten by the routes' error handler (code FST_ERR_BAD_REQUEST, its fields gone), and the app's own
// error handler never ran. Failed before.
test('an error thrown by the user\'s hook, or by one the app adds around the plugin, goes to the app\'s error handler untouched', async (t) => {
  const sim = await startSimulator(t)
  const app = Fastify()
  t.teardown(() => app.close())
  app.setErrorHandler((err: Error & { statusCode?: number, expiresIn?: number }, _request, reply) => {
    reply.code(err.statusCode ?? 500).send({ appHandler: true, message: err.message, expiresIn: err.expiresIn })
  })
  const limited = Object.assign(new Error('Rate limit exceeded, retry in 1 minute'), { statusCode: 429, expiresIn: 60 })
  app.addHook('onRequest', async (request) => {
    if (request.headers['x-outer'] === 'throw') throw Object.assign(new Error('maintenance'), { statusCode: 503 })
  })
  await app.register(wechatPush, {
    appId: sim.appId,
    appSecret: sim.appSecret,
    baseUrl: sim.url,
    routes: {
      prefix: '/wechat',
      onRequest: async (request: { headers: Record<string, unknown> }) => {
        if (request.headers['x-limit'] === 'throw') throw limited
        if (request.headers.authorization !== AUTH) throw Object.assign(new Error('who are you?'), { statusCode: 401 })
      },
      preHandler: async (request: { headers: Record<string, unknown> }) => {
        if (request.headers['x-role'] === 'guest') throw Object.assign(new Error('admins only'), { statusCode: 403 })
      }
    }
  })
  await app.ready()
  for (const [method, url] of ROUTES) {
    const payload = method === 'POST' ? (url.endsWith('batch') ? { messages: [shippedMessage()] } : shippedMessage()) : undefined
    const limitedRes = await app.inject({ method, url, payload, headers: { authorization: AUTH, 'x-limit': 'throw' } })
    t.equal(limitedRes.statusCode, 429, `${method} ${url}: 429`)
    t.same(limitedRes.json(), { appHandler: true, message: 'Rate limit exceeded, retry in 1 minute', expiresIn: 60 }, `${method} ${url}: the app's handler, the limiter's fields`)
    const stranger = await app.inject({ method, url, payload })
    t.same([stranger.statusCode, stranger.json()], [401, { appHandler: true, message: 'who are you?' }], `${method} ${url}: 401 by the app's handler`)
    const guest = await app.inject({ method, url, payload, headers: { authorization: AUTH, 'x-role': 'guest' } })
    t.same([guest.statusCode, guest.json()], [403, { appHandler: true, message: 'admins only' }], `${method} ${url}: a preHandler's 403 too`)
    const outer = await app.inject({ method, url, payload, headers: { authorization: AUTH, 'x-outer': 'throw' } })
    t.same([outer.statusCode, outer.json()], [503, { appHandler: true, message: 'maintenance' }], `${method} ${url}: the app's own hook`)
  }
  // The routes' own errors are still theirs: a body that fails validation, a message WeChat refuses.
  const invalidBody = await app.inject({ method: 'POST', url: '/wechat/messages', payload: { toUser: 1 }, headers: { authorization: AUTH } })
  t.match([invalidBody.statusCode, invalidBody.json()], [400, { code: 'FST_ERR_VALIDATION', message: /toUser/ }])
  sim.failNext('send', { errcode: 40003 })
  const refused = await app.inject({ method: 'POST', url: '/wechat/messages', payload: shippedMessage(), headers: { authorization: AUTH } })
  t.match([refused.statusCode, refused.json()], [422, { code: 'FST_WECHAT_API', errcode: 40003 }])
  t.equal(sim.counters.send, 1, 'only the refused one reached WeChat')
})

test('hooks given as arrays all run, onRequest before preHandler; a preHandler may refuse', async (t) => {
  const sim = await startSimulator(t)
  const seen: string[] = []
  const app = await routesApp(t, sim, {
    routes: {
      onRequest: [bearerAuth, async () => { seen.push('onRequest 2') }],
      preHandler: [async () => { seen.push('preHandler 1') }, async (request: { headers: Record<string, unknown> }, reply: { code: (n: number) => { send: (b: unknown) => unknown } }) => {
        seen.push('preHandler 2')
        if (request.headers['x-role'] !== 'admin') return reply.code(403).send({ message: 'admins only' })
      }]
    }
  })
  const refused = await call(app, 'GET', '/wechat/stats')
  t.equal(refused.statusCode, 403)
  t.same(refused.json(), { message: 'admins only' })
  t.same(seen, ['onRequest 2', 'preHandler 1', 'preHandler 2'])
  t.equal((await call(app, 'GET', '/wechat/stats', { headers: { 'x-role': 'admin' } })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/wechat/stats', headers: { 'x-role': 'admin' } })).statusCode, 401, 'the array\'s first hook still guards')
})

test('a hook that throws a 4xx keeps it; one that crashes is a logged 500 that reveals nothing', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim, {
    routes: {
      onRequest: async (request: { headers: Record<string, unknown> }) => {
        if (request.headers['x-crash']) throw new Error('database password is hunter2')
        if (request.headers.authorization !== AUTH) throw Object.assign(new Error('token expired'), { statusCode: 401, code: 'AUTH_EXPIRED' })
      }
    }
  })
  const expired = await app.inject({ method: 'GET', url: '/wechat/stats' })
  t.equal(expired.statusCode, 401)
  t.match(expired.json(), { statusCode: 401, code: 'AUTH_EXPIRED', error: 'Unauthorized', message: 'token expired' })
  const crashed = await call(app, 'GET', '/wechat/stats', { headers: { 'x-crash': '1' } })
  t.equal(crashed.statusCode, 500)
  t.match(crashed.json(), { statusCode: 500, code: 'FST_WECHAT_INTERNAL', error: 'Internal Server Error' })
  t.notMatch(crashed.body, /hunter2/)
})

test('our own prefix, inside the prefix the app registered us under', async (t) => {
  const sim = await startSimulator(t)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(async (api) => {
    await api.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, routes: { prefix: '/push/', onRequest: bearerAuth } })
  }, { prefix: '/v1' })
  await app.ready()
  t.equal((await call(app, 'GET', '/v1/push/stats')).statusCode, 200)
  t.equal((await call(app, 'GET', '/wechat/stats')).statusCode, 404)
  const page = await call(app, 'GET', '/v1/push/dashboard')
  t.match(page.body, /"statsUrl":"\/v1\/push\/stats"/, 'the page polls the full path')
})

// fastify.register's own options: an fp plugin has no context for Fastify to apply them to, so they
// were dropped (routes stayed at /wechat, info lines kept coming). Failed before.
test('register options prefix and logLevel apply to the routes, the push path and the plugin\'s logger', async (t) => {
  const sim = await startSimulator(t)
  const lines: Array<{ level: number, msg: string }> = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  t.teardown(() => app.close())
  await app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, prefix: '/api/', logLevel: 'error', routes: { onRequest: bearerAuth }, push: { token: 'Tok3n' } } as never)
  await app.ready()
  t.equal((await call(app, 'GET', '/api/wechat/stats')).statusCode, 200)
  t.equal((await call(app, 'GET', '/wechat/stats')).statusCode, 404)
  t.equal((await app.inject({ method: 'GET', url: '/api/wechat/push' })).statusCode, 401, 'the push endpoint under the prefix (a GET without signature)')
  t.equal((await app.inject({ method: 'GET', url: '/wechat/push' })).statusCode, 404)
  t.same(lines.filter((l) => l.level < 50 && /^wechat/.test(l.msg)), [], 'no plugin line below error')
  for (const [key, value] of [['prefix', 'api'], ['prefix', 7], ['logLevel', 'loud']] as const) {
    const bad = Fastify()
    t.teardown(() => bad.close())
    bad.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, [key]: value } as never)
    await t.rejects(async () => { await bad.ready() }, { code: 'FST_WECHAT_OPTIONS', message: new RegExp(key) }, `${key}: ${JSON.stringify(value)}`)
  }
})

test('POST /messages sends now: 200 { id, msgid }, and GET /messages/:id has the record', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const message = shippedMessage()
  const res = await postJson(app, '/wechat/messages', message)
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['id', 'msgid'])
  t.match(body.msgid, /^\d{19}$/, 'the 64-bit msgid as an exact string')
  t.equal(sim.accepted.length, 1)
  t.equal(sim.accepted[0].touser, message.toUser)
  const record = await call(app, 'GET', `/wechat/messages/${body.id}`)
  t.equal(record.statusCode, 200)
  t.match(record.json(), { id: body.id, status: 'sent', msgid: body.msgid, templateId: message.templateId, toUser: message.toUser, attempts: 1, source: 'send' })
})

test('idempotencyKey: the repeat returns the first message and sends nothing', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const message = { ...shippedMessage(), idempotencyKey: 'order-42-shipped' }
  const first = (await postJson(app, '/wechat/messages', message)).json()
  const again = await postJson(app, '/wechat/messages', message)
  t.equal(again.statusCode, 200)
  t.match(again.json(), { id: first.id, duplicate: true })
  t.equal(sim.accepted.length, 1)
  // queued (?queue=true): the repeat says so too (an audit: the 202 did not)
  const queuedMessage = { ...shippedMessage(), idempotencyKey: 'order-43-shipped' }
  const queued = await postJson(app, '/wechat/messages?queue=true', queuedMessage)
  t.equal(queued.statusCode, 202)
  t.equal(queued.json().duplicate, undefined)
  const queuedAgain = await postJson(app, '/wechat/messages?queue=true', queuedMessage)
  t.same([queuedAgain.statusCode, queuedAgain.json().id, queuedAgain.json().duplicate], [202, queued.json().id, true])
})

test('validation: \'truncate\' reports what it changed in the 200', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim, { plugin: { validation: 'truncate' } })
  const res = await postJson(app, '/wechat/messages', { ...shippedMessage(), data: { ...shippedMessage().data, thing2: 'A very long product title that WeChat would refuse' } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { id: /\w/, msgid: /^\d+$/, changes: [{ key: 'thing2', from: /^A very long/, to: /^A very long/, changes: [/\w/] }] })
})

test('?queue=true: 202 { id, status }, then the record progresses to sent', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const res = await postJson(app, '/wechat/messages?queue=true', shippedMessage())
  t.equal(res.statusCode, 202)
  const { id, status } = res.json()
  t.equal(status, 'pending')
  const record = await waitFor(async () => {
    const current = (await call(app, 'GET', `/wechat/messages/${id}`)).json()
    return current.status === 'sent' ? current : null
  })
  t.match(record, { id, status: 'sent', source: 'queue', msgid: /^\d+$/ })
  t.equal((await postJson(app, '/wechat/messages?queue=false', shippedMessage())).statusCode, 200, 'queue=false sends now')
})

test('GET /messages/:id: 404 when unknown, 4xx when the id cannot be one', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const missing = await call(app, 'GET', '/wechat/messages/0b7d4c1e-0000-4000-8000-000000000000')
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { statusCode: 404, code: 'FST_WECHAT_NOT_FOUND', error: 'Not Found', message: /no message/ })
  const empty = await call(app, 'GET', '/wechat/messages/')
  t.equal(empty.statusCode, 400)
  t.match(empty.json(), { code: 'FST_ERR_VALIDATION', message: /params\/id/ })
  const long = await call(app, 'GET', `/wechat/messages/${'x'.repeat(101)}`)
  t.equal(long.statusCode, 414, 'past the router\'s maxParamLength (100 by default)')
})

test('GET /stats equals app.wechat.stats()', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  await postJson(app, '/wechat/messages', shippedMessage())
  sim.failNext('send', { errcode: 40003, errmsg: 'invalid openid' })
  await postJson(app, '/wechat/messages', shippedMessage())
  await app.wechat.enqueue(shippedMessage(), { delay: 60_000 })
  const res = await call(app, 'GET', '/wechat/stats')
  t.equal(res.statusCode, 200)
  const stats = res.json()
  t.same(stats, await app.wechat.stats())
  t.match(stats, { sent: 1, failed: 1, pending: 1, total: 3, errcodes: { 40003: 1 }, recentFailures: [{ errcode: 40003, errmsg: /invalid openid/ }] })
})

test('@fastify/swagger sees every route with its schemas', async (t) => {
  const sim = await startSimulator(t)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySwagger, { openapi: { info: { title: 'test', version: '1.0.0' } } })
  await app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, routes: { onRequest: bearerAuth } })
  await app.ready()
  const spec = app.swagger() as { paths: Record<string, Record<string, any>> }
  t.same(Object.keys(spec.paths).sort(), ['/wechat/credits/{openid}', '/wechat/dashboard', '/wechat/messages', '/wechat/messages/batch', '/wechat/messages/{id}', '/wechat/stats', '/wechat/templates'])
  const send = spec.paths['/wechat/messages'].post
  t.same(send.tags, ['wechat'])
  const body = send.requestBody.content['application/json'].schema
  t.equal(body.additionalProperties, false)
  t.same(body.required.sort(), ['data', 'templateId', 'toUser'])
  t.ok(body.properties.idempotencyKey)
  t.match(send.parameters, [{ in: 'query', name: 'queue', schema: { type: 'boolean' } }])
  t.same(Object.keys(send.responses).sort(), ['200', '202', '400', '401', '403', '409', '422', '500', '502', '503', '504'])
  t.match(send.responses['422'].content['application/json'].schema.properties, { errcode: { type: 'integer' }, errmsg: { type: 'string' } })
  t.equal(spec.paths['/wechat/messages/batch'].post.requestBody.content['application/json'].schema.properties.messages.maxItems, 500)
  t.same(Object.keys(spec.paths['/wechat/messages/batch'].post.responses).sort(), ['202', '400', '401', '403', '500', '503'], 'a body not JSON or too large is a 400, not a 413/415')
  t.same(Object.keys(spec.paths['/wechat/templates'].get.responses).sort(), ['200', '400', '401', '403', '500', '502', '503', '504'], '45011/45009 are FST_WECHAT_API\'s 502, not a 429')
  t.match(spec.paths['/wechat/messages/{id}'].get.parameters, [{ in: 'path', name: 'id', required: true }])
  t.ok(spec.paths['/wechat/messages/{id}'].get.responses['404'])
  t.match(spec.paths['/wechat/stats'].get.responses['200'].content['application/json'].schema.properties, { recentFailures: { type: 'array' }, byTemplate: { type: 'object' } })
  t.ok(spec.paths['/wechat/dashboard'].get.responses['200'].content['text/html'])
})
