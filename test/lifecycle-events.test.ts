import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { MessageEvent } from '../lib/index.js'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import { KEY, pushApp, TOKEN } from './push-helpers.js'
import { numbered, settled, until } from './queue-helpers.js'

/** Every lifecycle event the app emits, in order. */
function listen (app: FastifyInstance): Array<{ name: string, event: MessageEvent }> {
  const seen: Array<{ name: string, event: MessageEvent }> = []
  for (const name of ['message:sent', 'message:delivered', 'message:failed', 'message:unknown'] as const) {
    app.wechat.on(name, (event) => { seen.push({ name, event }) })
  }
  return seen
}

test('direct sends: message:sent with the msgid, message:failed with the errcode, message:unknown when it may have been delivered', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { timeout: 1500 } })
  const seen = listen(app)
  const sent = await app.wechat.send(shippedMessage())
  const failedId = (promise: Promise<unknown>): Promise<string> => promise.then(() => 'resolved', (err: { messageId: string }) => err.messageId)
  const refused = await failedId(app.wechat.send(shippedMessage('not.an.openid')))
  sim.failNext('send', { delayMs: 4000 })
  sim.failNext('send', { errcode: 43101 })
  const maybe = await failedId(app.wechat.send(shippedMessage()))
  await until('three events', () => seen.length === 3)
  t.same(seen.map((s) => s.name), ['message:sent', 'message:failed', 'message:unknown'])
  t.match(seen[0]?.event, { id: sent.id, status: 'sent', msgid: sent.msgid, attempts: 1, source: 'send', toUser: shippedMessage().toUser })
  t.match(seen[1]?.event, { id: refused, status: 'failed', errcode: 40003, attempts: 1, source: 'send' })
  t.match(seen[2]?.event, { id: maybe, status: 'unknown', errcode: 43101, attempts: 2 })
  t.notOk(JSON.stringify(seen).includes(sim.appSecret), 'no secret in any event')
})

for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: one event per message, after its record; retries emit nothing until the outcome`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('lifecycle'), retry: { attempts: 3, minDelay: 10, maxDelay: 20 } } })
    const records: Array<string | undefined> = []
    app.wechat.on('message:sent', async (event) => { records.push((await app.wechat.status(event.id))?.status) })
    const seen = listen(app)
    await app.wechat.getToken()
    sim.failNext('send', { errcode: -1 })
    const ok = await app.wechat.enqueue(numbered('LE', 1))
    await settled(app, ok.map((r) => r.id))
    const more = await app.wechat.enqueue([numbered('LE', 2), { ...numbered('LE', 3), toUser: 'not.an.openid' }, numbered('LE', 4)])
    await settled(app, more.map((r) => r.id))
    await until('four events', () => seen.length === 4 && records.length === 3)

    const byId = new Map(seen.map((s) => [s.event.id, s]))
    t.equal(byId.size, 4, 'one event per message')
    t.match(byId.get(ok[0]?.id as string), { name: 'message:sent', event: { status: 'sent', attempts: 2, source: 'queue' } }, 'a retried message: one event, with its attempts')
    t.match(byId.get(more[1]?.id as string), { name: 'message:failed', event: { status: 'failed', errcode: 40003, attempts: 1 } })
    for (const id of [more[0]?.id, more[2]?.id]) {
      const record = await app.wechat.status(id as string)
      t.match(byId.get(id as string)?.event, { status: 'sent', msgid: record?.msgid }, 'the event matches the record')
    }
    t.same(records, ['sent', 'sent', 'sent'], 'a handler reading status(id) sees the outcome')
  })
}

test('a handler that throws is logged; sends and other handlers go on', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs()
  const app = await buildApp(t, sim, { logger: logs.logger })
  let other = 0
  app.wechat.on('message:sent', () => { throw new Error('handler bug') })
  app.wechat.on('message:sent', async () => { other++ })
  const sent = await app.wechat.send(shippedMessage())
  t.ok(sent.msgid, 'the send itself succeeded')
  await until('the other handler ran', () => other === 1)
  const failure = (): Record<string, unknown> | undefined => logs.parsed().find((l) => l.msg === 'wechat: lifecycle event handler failed')
  await until('the failure logged', () => failure() !== undefined)
  t.match(failure(), { event: 'message:sent', level: 50 })
})

test('a delivery receipt emits message:delivered (option push)', async (t) => {
  const sim = await startSimulator(t)
  const redisUrl = await redisFor(t, 'redis')
  const { app, url } = await pushApp(t, sim, { listen: true, redisUrl, plugin: { keyPrefix: uniquePrefix('lifecycle-receipt') } })
  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY })
  const seen = listen(app)
  const sent = await app.wechat.send(shippedMessage())
  await sim.pushesSettled()
  await until('sent and delivered', () => seen.length === 2)
  t.same(seen.map((s) => s.name), ['message:sent', 'message:delivered'])
  t.match(seen[1]?.event, { id: sent.id, status: 'delivered', msgid: sent.msgid, source: 'send' })
})

for (const kind of ['memory', 'redis'] as const) {
  test(`${kind} store: a second receipt of a delivered message (another CreateTime, or a retry of a push answered 503) emits nothing more`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const { app, url } = await pushApp(t, sim, { listen: true, redisUrl, plugin: { keyPrefix: uniquePrefix('lifecycle-repeat') } })
    sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY })
    const seen = listen(app)
    const sent = await app.wechat.send(shippedMessage())
    await sim.pushesSettled()
    await until('sent and delivered', () => seen.length === 2)
    const stats = await app.wechat.stats()
    const repeat = { FromUserName: shippedMessage().toUser, CreateTime: Math.floor(Date.now() / 1000) + 60, Event: 'subscribe_msg_sent_event', List: [{ TemplateId: shippedMessage().templateId, MsgID: sent.msgid, ErrorCode: 0, ErrorStatus: 'success' }] }
    const answer = await sim.push(undefined, repeat)
    t.match(answer, { statusCode: 200, body: 'success' }, 'acknowledged')
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.same(seen.map((s) => s.name), ['message:sent', 'message:delivered'], 'one message:delivered')
    t.equal((await app.wechat.status(sent.id))?.status, 'delivered')
    t.same(await app.wechat.stats(), stats, 'counters unchanged')
  })
}

test('token:fetched once per new token, never with the token; token:error with the advice, never with the secret', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { tokenEndpoint: 'classic', retry: { attempts: 2, minDelay: 10, maxDelay: 20 } } })
  const fetched: unknown[] = []
  const errors: Array<Record<string, unknown>> = []
  app.wechat.on('token:fetched', (event) => { fetched.push(event) })
  app.wechat.on('token:error', (event) => { errors.push({ ...event }) })
  const token = await app.wechat.getToken()
  await Promise.all(Array.from({ length: 20 }, () => app.wechat.send(shippedMessage())))
  await until('token:fetched', () => fetched.length === 1)
  t.match(fetched[0], { endpoint: 'classic', forceRefresh: false, expiresAt: Number })
  t.ok((fetched[0] as { expiresAt: number }).expiresAt > Date.now(), 'expiresAt is in the future')

  sim.failNext('token', { errcode: 40164, errmsg: 'invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist rid: 6502a1b3-1c2d3e4f-5a6b7c8d' })
  await t.rejects(app.wechat.getToken({ forceRefresh: true }), { code: 'FST_WECHAT_TOKEN', errcode: 40164 })
  sim.failNext('token', { errcode: 40125, errmsg: `invalid appsecret ${sim.appSecret}` })
  await t.rejects(app.wechat.getToken({ forceRefresh: true }), { code: 'FST_WECHAT_TOKEN', errcode: 40125 })
  await until('two token:error events', () => errors.length === 2)
  t.match(errors[0], { code: 'FST_WECHAT_TOKEN', errcode: 40164, rid: '6502a1b3-1c2d3e4f-5a6b7c8d', retryable: false, message: /203\.0\.113\.7.*whitelist|whitelist.*203\.0\.113\.7/ })
  t.match(errors[1], { errcode: 40125, message: /appSecret is wrong/ })

  // The network: the classic endpoint's URL holds the secret, and must not leak through an error.
  const dead = await buildApp(t, sim, { plugin: { tokenEndpoint: 'classic', baseUrl: 'http://127.0.0.1:9', appSecret: sim.appSecret, retry: { attempts: 1, minDelay: 10, maxDelay: 20 } } })
  const deadErrors: unknown[] = []
  dead.wechat.on('token:error', (event) => { deadErrors.push(event) })
  await t.rejects(dead.wechat.getToken())
  await until('token:error of a network failure', () => deadErrors.length >= 1)
  t.match(deadErrors[0], { retryable: true })
  const all = JSON.stringify([fetched, errors, deadErrors])
  t.notOk(all.includes(sim.appSecret), 'no secret in any token event')
  t.notOk(all.includes(token), 'no token in any token event')
})

// A misspelt lifecycle name ('message:sendt') was taken as a push Event name and never fired, without
// a word. Names with ':' are ours (WeChat's Event names have none): an unknown one is refused. Failed before.
test('on() refuses a lifecycle name it does not know; WeChat Event names are still taken', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  const on = app.wechat.on as (event: string, handler: () => void) => void
  t.throws(() => { on('message:sendt', () => {}) }, { name: 'TypeError', message: /'message:sendt' is not a lifecycle event \(message:sent, message:delivered/ })
  t.throws(() => { on('token:refreshed', () => {}) }, TypeError)
  t.doesNotThrow(() => { on('user_enter_tempsession', () => {}) })
  t.doesNotThrow(() => { on('message:sent', () => {}) })
})
