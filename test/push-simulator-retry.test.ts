import { test } from 'tap'
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { isReceipt, PUSH_ATTEMPTS, PUSH_RETRY_DELAY_MS, PUSH_TIMEOUT_MS } from '../lib/testing/index.js'
import type { WechatSimulator } from '../lib/testing/index.js'
import { shippedMessage, startSimulator } from './helpers/app.js'
import type { Teardown } from './helpers/app.js'
import { pushApp, TOKEN } from './push-helpers.js'

type Answer = (req: IncomingMessage, res: ServerResponse) => void

/** A bare HTTP app that answers the n-th push with answers[n] (the last one repeats); logs each query. */
async function fakeApp (t: Teardown, answers: Answer[]): Promise<{ url: string, hits: URLSearchParams[], bodies: string[] }> {
  const hits: URLSearchParams[] = []
  const bodies: string[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (chunk: Buffer) => { body += chunk.toString() })
    req.on('end', () => {
      hits.push(new URL(req.url ?? '/', 'http://x').searchParams)
      bodies.push(body)
      answers[Math.min(hits.length, answers.length) - 1](req, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits, bodies }
}

const status = (code: number, body = ''): Answer => (_req, res) => { res.writeHead(code); res.end(body) }
const silent: Answer = () => {} // never answers: WeChat gives up after its timeout
const drop: Answer = (req) => { req.socket.destroy() }

/** Short pauses between attempts; the push timeout stays WeChat's 5 s unless a test is about it (an answer on a loaded machine can take more than a short one). */
async function fastSim (t: Teardown, extra = {}): Promise<WechatSimulator> {
  return startSimulator(t, { pushRetryDelayMs: 50, ...extra })
}

test('WeChat\'s values are the defaults: 5 s per attempt, 3 attempts in total (WECHAT.md §6.5)', async (t) => {
  t.equal(PUSH_TIMEOUT_MS, 5000)
  t.equal(PUSH_ATTEMPTS, 3)
  t.ok(PUSH_RETRY_DELAY_MS > 0 && PUSH_RETRY_DELAY_MS <= 1000)
  t.ok(isReceipt({ statusCode: 200, body: 'success' }) && isReceipt({ statusCode: 200, body: '' }))
  // WECHAT.md §6.5 says HTTP 200: a 204 (no content) or 201 is not taken as receipt (it was before)
  t.notOk(isReceipt({ statusCode: 204, body: '' }) || isReceipt({ statusCode: 201, body: 'success' }))
  t.notOk(isReceipt({ statusCode: 200, body: 'ok' }) || isReceipt({ statusCode: 503, body: 'success' }) || isReceipt({ statusCode: 0, body: '' }))
})

test('sim.push retries what the app did not acknowledge, up to 3 attempts, each logged', async (t) => {
  const sim = await fastSim(t)
  const app = await fakeApp(t, [status(503, 'busy'), status(200, 'ok'), status(200, 'success')])
  const started = Date.now()
  const result = await sim.push(app.url, { FromUserName: 'oUser-retry-000001', Event: 'debug_demo' }, { token: TOKEN })
  t.same(result, { statusCode: 200, body: 'success' }, 'the last attempt\'s answer')
  t.ok(Date.now() - started >= 100, 'paused between attempts')
  t.same(sim.pushes, [
    { event: 'debug_demo', statusCode: 503, body: 'busy', attempt: 1 },
    { event: 'debug_demo', statusCode: 200, body: 'ok', attempt: 2 },
    { event: 'debug_demo', statusCode: 200, body: 'success', attempt: 3 }
  ])
  t.equal(new Set(app.hits.map((q) => q.get('nonce'))).size, 3, 'each attempt is signed with a fresh nonce')
  t.equal(new Set(app.bodies).size, 1, 'the same content every time (same CreateTime): the app can dedupe it')

  // An acknowledgement stops the retries at once: an empty 200 counts as one.
  const once = await fakeApp(t, [status(200)])
  t.same(await sim.push(once.url, { FromUserName: 'oUser-retry-000001', Event: 'debug_demo' }, { token: TOKEN }), { statusCode: 200, body: '' })
  t.equal(once.hits.length, 1)
})

test('an app that never answers is cut off after the timeout, 3 times; a dropped connection likewise', async (t) => {
  const sim = await fastSim(t, { pushTimeoutMs: 300 })
  const hanging = await fakeApp(t, [silent])
  const started = Date.now()
  t.same(await sim.push(hanging.url, { Event: 'debug_demo' }, { token: TOKEN }), { statusCode: 0, body: '' })
  const took = Date.now() - started
  t.ok(took >= 3 * 300 && took < 4000, `3 timeouts of 300 ms plus pauses (${took} ms)`)
  t.same(sim.pushes.map((p) => [p.attempt, p.statusCode, p.error]), [[1, 0, 'timeout'], [2, 0, 'timeout'], [3, 0, 'timeout']])

  // (WeChat's own timeout here: attempt 2 must get its answer)
  const patient = await fastSim(t)
  const dropping = await fakeApp(t, [drop, status(200, 'success')])
  t.same(await patient.push(dropping.url, { Event: 'debug_demo' }, { token: TOKEN }), { statusCode: 200, body: 'success' })
  t.same(patient.pushes.map((p) => [p.attempt, p.statusCode, p.error]), [[1, 0, 'connection'], [2, 200, undefined]])
})

test('sent events and pop-ups are retried too; pushesSettled waits for the retries', async (t) => {
  const sim = await fastSim(t)
  const { app } = await pushApp(t, sim)
  const target = await fakeApp(t, [status(500), status(500), status(200, 'success'), status(502), status(200, 'success')])
  sim.pushConfig({ url: target.url, token: TOKEN })
  await app.wechat.send(shippedMessage())
  await sim.pushesSettled()
  t.same(sim.pushes.map((p) => [p.event, p.attempt, p.statusCode]), [
    ['subscribe_msg_sent_event', 1, 500],
    ['subscribe_msg_sent_event', 2, 500],
    ['subscribe_msg_sent_event', 3, 200]
  ])
  const results = await sim.popup([{ openid: 'oUser-retry-000002', templateId: 'T', status: 'accept' }])
  t.same(results, [{ statusCode: 200, body: 'success' }])
  t.same(sim.pushes.slice(3).map((p) => [p.event, p.attempt, p.statusCode]), [['subscribe_msg_popup_event', 1, 502], ['subscribe_msg_popup_event', 2, 200]])
})

// Sent events used to get distinct CreateTimes under a frozen clock; WeChat gives two sends in the
// same second the same one, and only MsgID tells them apart (push-simulator.test.ts has the plugin's side).
test('two sent events for one user and template under a frozen clock: the same CreateTime, different MsgIDs', async (t) => {
  const sim = await fastSim(t)
  const { app } = await pushApp(t, sim)
  const target = await fakeApp(t, [status(200, 'success')])
  sim.pushConfig({ url: target.url, token: TOKEN, format: 'json' })
  await app.wechat.send(shippedMessage('oUser-retry-000003'))
  await app.wechat.send(shippedMessage('oUser-retry-000003'))
  await sim.pushesSettled()
  const events = target.bodies.map((b) => JSON.parse(b) as { CreateTime: number, List: { MsgID: string } })
  t.equal(events.length, 2)
  t.equal(events[0]?.CreateTime, events[1]?.CreateTime)
  t.not(events[0]?.List.MsgID, events[1]?.List.MsgID)
})

test('pushTimeoutMs and pushRetryDelayMs are checked', async (t) => {
  await t.rejects(startSimulator(t, { pushTimeoutMs: 0 }), TypeError)
  await t.rejects(startSimulator(t, { pushRetryDelayMs: -1 }), TypeError)
})
