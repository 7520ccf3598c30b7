import { test } from 'tap'
import Fastify from 'fastify'
import { request } from 'undici'
import { Readable } from 'node:stream'
import { PushEventBus } from '../lib/push/event-bus.js'
import { registerPushEndpoint } from '../lib/push/plugin.js'
import { EVENTS_DRAIN_MS as DRAIN_MS } from '../lib/push/event-bus.js'
import { normalizePush } from '../lib/push/events.js'
import type { PushMessage } from '../lib/push/events.js'
import { MemoryStore } from '../lib/store/memory.js'
import { pushSignature } from '../lib/push/signature.js'
import { buildSimPush } from '../lib/testing/index.js'
import { buildPushBody } from '../lib/push/envelope.js'
import { startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { changeEvent, KEY, popupEvent, pushApp, sentEvent, settle, TOKEN, waitFor } from './push-helpers.js'

interface Logged { obj: Record<string, unknown>, msg: string }
function fakeLog (): { log: any, errors: Logged[], warns: Logged[] } {
  const errors: Logged[] = []
  const warns: Logged[] = []
  const log = {
    error: (obj: Record<string, unknown>, msg: string) => { errors.push({ obj, msg }) },
    warn: (obj: Record<string, unknown>, msg: string) => { warns.push({ obj, msg }) },
    debug: () => {},
    info: () => {}
  }
  return { log, errors, warns }
}

const popup = normalizePush(popupEvent()) as PushMessage
const sent = normalizePush(sentEvent()) as PushMessage

test('bus: internal hooks run in order and their failure rejects; names route; user errors are logged and contained', async (t) => {
  const { log, errors } = fakeLog()
  const bus = new PushEventBus(log)
  const order: string[] = []
  let fail = true
  bus.onInternal(async () => { await new Promise((resolve) => setTimeout(resolve, 20)); order.push('internal-1') })
  bus.onInternal(() => { order.push('internal-2'); if (fail) throw new Error('receipt store down') })
  bus.onInternal(() => { order.push('internal-3') })
  bus.on('subscribe_msg_popup_event', (event) => { order.push(`popup:${event.List.length}`) })
  bus.on('event', (event) => { order.push(`all:${event.Event ?? ''}`) })
  bus.on('subscribe_msg_sent_event', async () => { order.push('sent'); throw new Error('user bug') })
  bus.on('debug_demo', () => { order.push('debug') })

  const failed = bus.applyInternal(popup)
  t.equal(bus.pending, 1, 'counted for close')
  await t.rejects(failed, { message: 'receipt store down' })
  t.same(order, ['internal-1', 'internal-2'], 'stops at the first failure')
  await settle()
  t.equal(bus.pending, 0)
  fail = false
  order.length = 0
  await bus.applyInternal(popup)
  await bus.emit(popup)
  t.same(order, ['internal-1', 'internal-2', 'internal-3', 'popup:2', 'all:subscribe_msg_popup_event'])
  order.length = 0
  await bus.emit(sent)
  t.same(order, ['sent', 'all:subscribe_msg_sent_event'], 'emit runs user handlers only')
  t.same(errors.map((e) => [e.obj.event, (e.obj.err as Error).message]), [['subscribe_msg_sent_event', 'user bug']])
  order.length = 0
  await bus.emit({ ...popup, Event: 'event' } as PushMessage)
  t.same(order, ['all:event'], 'an Event named "event" is not delivered twice')
  order.length = 0
  const { Event: _e, ...noEvent } = popup
  await bus.emit(noEvent as PushMessage)
  t.same(order, ['all:'], 'a push without Event reaches the catch-all only')
})

test('endpoint: effects that cannot be stored get a 503 and are applied once by the retry; user handler errors do not', async (t) => {
  const { log } = fakeLog()
  // What the endpoint logs while handling a request goes to request.log, so to the app's logger.
  const logs = captureLogs('info')
  const app = Fastify({ logger: logs.logger })
  t.teardown(() => app.close())
  const bus = new PushEventBus(log)
  const push = { path: '/p', token: TOKEN, mode: 'plaintext' as const, bodyLimit: 4096, replayWindowMs: 300_000 }
  registerPushEndpoint(app, { push, appId: 'wx1', store: new MemoryStore({ now: () => Date.now() }), events: bus, clock: { now: () => Date.now() }, log })
  let failures = 1
  let applied = 0
  let gate: Promise<void> | null = null
  bus.onInternal(async () => {
    if (gate) await gate
    if (failures-- > 0) throw new Error('store down')
    applied++
  })
  let handled = 0
  bus.on('event', () => { handled++; throw new Error('user bug') })
  await app.ready()
  const body = buildPushBody(popupEvent(), { format: 'xml' })
  const attempt = async (nonce: string): Promise<{ statusCode: number, body: string }> => {
    const ts = String(Math.floor(Date.now() / 1000))
    const res = await app.inject({ method: 'POST', url: '/p', query: { signature: pushSignature([TOKEN, ts, nonce]), timestamp: ts, nonce }, headers: { 'content-type': 'text/xml' }, body })
    return { statusCode: res.statusCode, body: res.body }
  }

  const first = await attempt('1')
  t.equal(first.statusCode, 503, 'not acknowledged: WeChat retries')
  t.same(JSON.parse(first.body), { statusCode: 503, code: 'FST_WECHAT_PUSH_UNAVAILABLE', error: 'Service Unavailable', message: 'push could not be stored now; WeChat retries it' })
  t.match(logs.parsed().find((line) => /push effects could not be stored/.test(String(line.msg))), { level: 40, reqId: /./, plugin: 'fastify-wechat-push', appId: 'wx1' })
  t.same(await attempt('2'), { statusCode: 200, body: 'success' }, 'the retry is applied, not taken for a duplicate')
  t.same(await attempt('3'), { statusCode: 200, body: 'success' }, 'a later retry is a duplicate')
  await settle()
  t.equal(applied, 1, 'applied exactly once')
  t.equal(handled, 1, 'user handlers ran once; their error did not turn into a 503')

  // A retry arriving while another attempt is still applying the same push is not acknowledged.
  let open: () => void = () => {}
  gate = new Promise<void>((resolve) => { open = resolve })
  const other = buildPushBody(sentEvent('55'), { format: 'xml' })
  const ts = String(Math.floor(Date.now() / 1000))
  const send = async (nonce: string): Promise<{ statusCode: number, body: string }> => await app.inject({ method: 'POST', url: '/p', query: { signature: pushSignature([TOKEN, ts, nonce]), timestamp: ts, nonce }, headers: { 'content-type': 'text/xml' }, body: other })
  const slow = send('4')
  await new Promise((resolve) => setTimeout(resolve, 20))
  const concurrent = await send('5')
  t.equal(concurrent.statusCode, 503)
  open()
  t.equal((await slow).body, 'success')
  t.equal((await send('6')).body, 'success')
  t.equal(applied, 2)

  // The same push twice at once, the first done within a moment: the second waits for it and is
  // acknowledged as a duplicate (it was a 503 at once, before).
  gate = new Promise<void>((resolve) => { open = resolve })
  const third = buildPushBody(sentEvent('56'), { format: 'xml' })
  const sendThird = async (nonce: string): Promise<string> => (await app.inject({ method: 'POST', url: '/p', query: { signature: pushSignature([TOKEN, ts, nonce]), timestamp: ts, nonce }, headers: { 'content-type': 'text/xml' }, body: third })).body
  const firstOfTwo = sendThird('7')
  await new Promise((resolve) => setTimeout(resolve, 20))
  const secondOfTwo = sendThird('8')
  await new Promise((resolve) => setTimeout(resolve, 100))
  open()
  t.same(await Promise.all([firstOfTwo, secondOfTwo]), ['success', 'success'])
  t.equal(applied, 3, 'applied once')
})

test('a push named like a lifecycle event reaches the catch-all only, never lifecycle handlers', async (t) => {
  const sim = await startSimulator(t)
  const { app, url } = await pushApp(t, sim, { listen: true })
  const lifecycle: unknown[] = []
  for (const name of ['message:delivered', 'message:failed', 'token:error'] as const) app.wechat.on(name, (event) => { lifecycle.push(event) })
  const all: string[] = []
  app.wechat.on('event', (message) => { all.push(message.Event ?? '') })
  for (const [i, Event] of ['message:delivered', 'token:error'].entries()) {
    const res = await sim.push(url, { ...changeEvent(), CreateTime: 1767229200 + i, Event, List: undefined, id: 'not-a-record', status: 'delivered' }, { token: TOKEN, encodingAESKey: KEY })
    t.equal(res.body, 'success')
  }
  await waitFor(() => all.length === 2)
  await settle()
  t.same(all, ['message:delivered', 'token:error'])
  t.same(lifecycle, [], 'lifecycle handlers got nothing')
})

test('bus: on() refuses bad arguments; drain waits, but only so long', async (t) => {
  const bus = new PushEventBus(fakeLog().log)
  t.throws(() => bus.on(42 as never, () => {}), TypeError)
  t.throws(() => bus.on('event', null as never), TypeError)
  await bus.drain(10) // nothing in flight
  let release: () => void = () => {}
  bus.on('event', () => new Promise<void>((resolve) => { release = resolve }))
  const run = bus.emit(popup)
  t.equal(bus.pending, 1)
  const started = Date.now()
  const keepAlive = setInterval(() => {}, 1000) // drain's own timer is unref'd
  await bus.drain(50)
  clearInterval(keepAlive)
  t.ok(Date.now() - started >= 45, 'gave up after maxMs')
  t.equal(bus.pending, 1)
  release()
  await run
  await settle()
  t.equal(bus.pending, 0)
  t.equal(DRAIN_MS, 5000)
})

test('app.close() waits for handlers already acknowledged to WeChat', async (t) => {
  const sim = await startSimulator(t)
  const { app, url } = await pushApp(t, sim, { listen: true })
  let done = false
  app.wechat.on('event', async () => { await new Promise((resolve) => setTimeout(resolve, 200)); done = true })
  t.equal((await sim.push(url, changeEvent(), { token: TOKEN, encodingAESKey: KEY })).body, 'success')
  await app.close() // right after the answer: the dispatch is already counted
  t.ok(done, 'handler finished before close resolved')
})

test('app.close() gives a push handler that never settles 5 s in all, not 5 s per part that waits for it', async (t) => {
  const sim = await startSimulator(t)
  const { app, url } = await pushApp(t, sim, { listen: true })
  app.wechat.on('event', () => new Promise(() => {}))
  t.equal((await sim.push(url, changeEvent(), { token: TOKEN, encodingAESKey: KEY })).body, 'success')
  const started = Date.now()
  await app.close()
  const took = Date.now() - started
  t.ok(took >= DRAIN_MS - 100 && took < DRAIN_MS + 2000, `closed in ${took} ms (it took 10 s: an audit)`)
})

test('handler errors are logged with the event name; nothing secret is logged', async (t) => {
  const sim = await startSimulator(t)
  // info: a refusal is logged at info (a client 4xx), and the no-secret check covers the request lines too.
  const { app, url, logs } = await pushApp(t, sim, { listen: true, logLevel: 'info' })
  let after = 0
  app.wechat.on('subscribe_msg_change_event', () => { throw new Error('handler exploded') })
  app.wechat.on('subscribe_msg_change_event', () => { after++ })
  t.equal((await sim.push(url, changeEvent(), { token: TOKEN, encodingAESKey: KEY })).body, 'success')
  await waitFor(() => logs.some((l) => l.msg === 'wechat: push event handler failed'))
  t.equal(after, 1, 'the other handler still ran')
  const failure = logs.find((l) => l.msg === 'wechat: push event handler failed')
  t.equal(failure?.event, 'subscribe_msg_change_event')
  t.equal((await sim.push(url, changeEvent(), { token: 'otherToken1', encodingAESKey: KEY })).statusCode, 401)
  t.ok(logs.some((l) => l.msg === 'wechat: push rejected' && l.reason === 'signature' && l.level === 30))
  const text = JSON.stringify(logs)
  t.notOk(text.includes(TOKEN) || text.includes(KEY) || text.includes('otherToken1'), 'no token or key in the logs')
})

test('chunked 10 MB body over real HTTP: unsigned → 401 before it is read, signed → 413; the server stays up', async (t) => {
  const sim = await startSimulator(t)
  const { url } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext' }, listen: true })
  const chunk = Buffer.alloc(64 * 1024, 0x61)
  const ts = String(Math.floor(Date.now() / 1000))
  for (const [query, status] of [['timestamp=1&nonce=2&signature=3', 401], [`timestamp=${ts}&nonce=2&signature=${pushSignature([TOKEN, ts, '2'])}`, 413]] as const) {
    const body = Readable.from((function * () { for (let i = 0; i < 160; i++) yield chunk })())
    const res = await request(`${url}/wechat/push?${query}`, { method: 'POST', headers: { 'content-type': 'text/xml' }, body }).catch((err: Error) => err)
    if (res instanceof Error) {
      t.pass(`connection closed while uploading (${res.message})`)
    } else {
      t.equal(res.statusCode, status)
      await res.body.dump()
    }
  }
  t.equal((await sim.push(url, popupEvent(), { token: TOKEN, mode: 'plaintext' })).body, 'success')
})

test('anything unexpected on the endpoint is a 400, never a 500, and logged without detail', async (t) => {
  const { log } = fakeLog()
  const logs = captureLogs('info')
  const app = Fastify({ logger: logs.logger })
  t.teardown(() => app.close())
  const failures: unknown[] = [new Error('boom: secret-ish detail'), Object.assign(new Error('teapot'), { statusCode: 418 }), Object.assign(new Error('x'), { statusCode: 499 }), { name: 'Weird' }]
  let calls = 0
  const clock = { now: () => { throw failures[calls++ % failures.length] } }
  const push = { path: '/p', token: TOKEN, mode: 'plaintext' as const, bodyLimit: 1024, replayWindowMs: 300_000 }
  registerPushEndpoint(app, { push, appId: 'wx1', store: new MemoryStore({ now: () => Date.now() }), events: new PushEventBus(log), clock, log })
  await app.ready()
  const query = { signature: pushSignature([TOKEN, '1', 'n']), timestamp: '1', nonce: 'n' }
  const answers = []
  for (let i = 0; i < failures.length; i++) answers.push(await app.inject({ method: 'POST', url: '/p', query, body: '<xml/>' }))
  t.same(answers.map((r) => r.statusCode), [400, 418, 499, 400])
  t.same(answers[0].json(), { statusCode: 400, code: 'FST_WECHAT_PUSH_BAD_REQUEST', error: 'Bad Request', message: 'push request could not be processed' })
  t.equal(answers[2].json().error, 'Error')
  t.equal(answers[1].json().code, 'FST_WECHAT_PUSH_BAD_REQUEST')
  const errors = logs.parsed().filter((line) => line.level === 50)
  t.equal(errors.length, 2)
  t.notMatch(logs.lines.join('\n'), /secret-ish/, 'the message is not logged')
  t.match(errors[0], { msg: 'wechat: unexpected error on the push endpoint, answered 400', reqId: /./, err: { type: 'Error' } })
  // 418 and 499 are the client's: refused at info, as Fastify logs a client error; nothing at warn.
  t.same(logs.parsed().filter((line) => line.msg === 'wechat: push request refused').map((line) => [line.level, line.statusCode]), [[30, 418], [30, 499]])
  t.equal(logs.parsed().filter((line) => line.level === 40).length, 0)
})

// request.log carries the plugin logger's level too: a plugin logger set quieter than the app (the
// register-level logLevel) keeps its refusals out of the app's info lines.
test('the endpoint logs on request.log at the plugin logger\'s level', async (t) => {
  const logs = captureLogs('info')
  const app = Fastify({ logger: logs.logger })
  t.teardown(() => app.close())
  const log = app.log.child({ plugin: 'fastify-wechat-push', appId: 'wx1' }, { level: 'warn' })
  const push = { path: '/p', token: TOKEN, mode: 'plaintext' as const, bodyLimit: 1024, replayWindowMs: 0 }
  registerPushEndpoint(app, { push, appId: 'wx1', store: new MemoryStore({ now: () => Date.now() }), events: new PushEventBus(log), clock: { now: () => Date.now() }, log })
  await app.ready()
  t.equal((await app.inject({ method: 'POST', url: '/p', query: { signature: 'f'.repeat(40), timestamp: '1', nonce: 'n' }, body: '<xml/>' })).statusCode, 401)
  t.ok(logs.parsed().some((line) => line.msg === 'request completed'), 'the app logs at info')
  t.notOk(logs.parsed().some((line) => line.msg === 'wechat: push rejected'), 'the refusal is under the plugin logger\'s level')
})

test('buildSimPush refuses a push it cannot sign', async (t) => {
  t.throws(() => buildSimPush(popupEvent(), {}, 'wx1', 0), TypeError)
  t.throws(() => buildSimPush(popupEvent(), { token: TOKEN, mode: 'safe' }, 'wx1', 0), TypeError)
  const built = buildSimPush({ ...popupEvent(), FromUserName: undefined }, { token: TOKEN }, 'wx1', 0)
  t.notMatch(built.url, /openid=/)
  t.match(built.url, /^\/wechat\/push\?signature=[0-9a-f]{40}&timestamp=0&nonce=\d{10}$/)
})

// An independent WeChat that pushes in the same second: the dedupe key (user, time, event, template
// ids) took an accept then a reject of one template as a retry of the first (the reject never reached
// the handlers), and refused WeChat's debug_demo test event (no FromUserName): 400, retried three
// times, lost. Failed before (one popup event handled, not two; the debug push got 400).
test('endpoint: two different outcomes in one second are two pushes; a retry of either is still one; a bare debug_demo is acknowledged', async (t) => {
  const sim = await startSimulator(t, { pushRetryDelayMs: 10 })
  const { app, url } = await pushApp(t, sim, { listen: true, push: { token: TOKEN } })
  const events: PushMessage[] = []
  app.wechat.on('event', (message) => { events.push(message) })
  const at = Math.floor(Date.now() / 1000)
  const outcome = (status: 'accept' | 'reject'): Record<string, unknown> => ({
    ...popupEvent(),
    CreateTime: at,
    List: [{ TemplateId: 'TplSameSecond', SubscribeStatusString: status, PopupScene: '0' }]
  })
  const options = { token: TOKEN, mode: 'plaintext' as const }
  t.equal((await sim.push(url, outcome('accept'), options)).body, 'success')
  t.same(await app.wechat.credits(popupEvent().FromUserName as string), { TplSameSecond: 1 })
  t.equal((await sim.push(url, outcome('accept'), options)).body, 'success', 'a retry of it (a fresh nonce) is acknowledged')
  t.same(await app.wechat.credits(popupEvent().FromUserName as string), { TplSameSecond: 1 }, 'and applied once')
  t.equal((await sim.push(url, outcome('reject'), options)).body, 'success', 'the reject in the same second')

  for (let i = 0; i < 2; i++) {
    const demo = await sim.push(url, { MsgType: 'event', Event: 'debug_demo', debug_str: 'hello world', ToUserName: undefined, CreateTime: undefined }, options)
    t.same({ statusCode: demo.statusCode, body: demo.body }, { statusCode: 200, body: 'success' }, `debug_demo ${i + 1} acknowledged`)
  }
  await waitFor(() => events.filter((m) => m.Event === 'debug_demo').length === 2)
  t.equal(events.filter((m) => m.Event === 'debug_demo').length, 2, 'each bare push reaches the handlers (nothing to tell a retry by)')
  const popups = events.filter((m) => m.Event === 'subscribe_msg_popup_event').map((m) => (m.List as Array<{ SubscribeStatusString: string }>)[0]?.SubscribeStatusString)
  t.same(popups, ['accept', 'reject'], 'the accept and the reject reach the handlers, the retry does not')
})
