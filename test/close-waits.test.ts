/**
 * Waits that close() and a caller's signal must end (DESIGN.md "app.close() is prompt"; README
 * "Waiting, and closing"): a token fetch or a template-list read that hangs at WeChat is cut off at
 * close() instead of being waited out (its timeout, then its retries), and a send waiting for one
 * stops waiting when its caller aborts. The timeouts here are long (20 s) so that "prompt" and
 * "waited it out" cannot be confused on a loaded machine.
 */
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import type { WechatSimulator } from '../lib/testing/index.js'

const HANG_MS = 60_000
const TIMEOUT_MS = 20_000
/** far below one TIMEOUT_MS: what "at once" means here */
const PROMPT_MS = 5_000

async function hangingApp (t: Parameters<typeof buildApp>[0], sim: WechatSimulator, templates: boolean): Promise<FastifyInstance> {
  return buildApp(t, sim, { plugin: { timeout: TIMEOUT_MS, retry: { attempts: 3, minDelay: 5, maxDelay: 20 }, ...(templates ? {} : { templates: false }) } })
}

async function timed<T> (work: Promise<T>): Promise<{ ms: number, value?: T, error?: Error & { code?: string } }> {
  const started = Date.now()
  try {
    const value = await work
    return { ms: Date.now() - started, value }
  } catch (err) {
    return { ms: Date.now() - started, error: err as Error & { code?: string } }
  }
}

test('close() cuts a token fetch that hangs: a send waiting for it ends at once with a coded error', async (t) => {
  const sim = await startSimulator(t)
  sim.failNext('stable_token', { delayMs: HANG_MS }, 10)
  const app = await hangingApp(t, sim, false)
  const send = timed(app.wechat.send(shippedMessage()))
  await new Promise((resolve) => setTimeout(resolve, 300))
  const closed = await timed(app.close())
  t.ok(closed.ms < PROMPT_MS, `close() took ${closed.ms} ms (the fetch's timeout is ${TIMEOUT_MS} ms)`)
  const sent = await send
  t.ok(sent.ms < PROMPT_MS + 300, `the send ended after ${sent.ms} ms`)
  t.match(sent.error, { code: 'FST_WECHAT_UPSTREAM', outcome: 'failed' }, 'the send says the app is closing')
  t.match(sent.error?.message, /closing/)
  t.equal(sim.accepted.length, 0, 'nothing was sent')
  t.equal(sim.counters.stable_token, 1, 'the fetch was not retried after close()')
})

test('close() cuts the boot refresh job\'s hanging token fetch (no send waiting)', async (t) => {
  const sim = await startSimulator(t)
  sim.failNext('stable_token', { delayMs: HANG_MS }, 10)
  const app = await hangingApp(t, sim, false)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(sim.counters.stable_token, 1, 'the boot job is fetching')
  const closed = await timed(app.close())
  t.ok(closed.ms < PROMPT_MS, `close() took ${closed.ms} ms (the fetch's timeout is ${TIMEOUT_MS} ms)`)
})

test('a send waiting for a token stops waiting when its caller aborts; the fetch goes on for the others', async (t) => {
  const sim = await startSimulator(t)
  sim.failNext('stable_token', { delayMs: 1500 }, 1)
  const app = await hangingApp(t, sim, false)
  const controller = new AbortController()
  const reason = new Error('the caller gave up')
  const aborted = timed(app.wechat.send(shippedMessage(), { signal: controller.signal }))
  const patient = app.wechat.send(shippedMessage())
  await new Promise((resolve) => setTimeout(resolve, 300))
  controller.abort(reason)
  const result = await aborted
  t.equal(result.error, reason, 'rejects with the signal\'s reason')
  t.ok(result.ms < 1200, `at once (${result.ms} ms; the token came after 1.5 s)`)
  const other = await patient
  t.match(other, { id: String }, 'the other send got the token and went out')
  t.equal(sim.accepted.length, 1, 'only the patient one was sent')
  t.equal(sim.counters.stable_token, 1, 'one fetch')
})

test('a gettemplate that hangs holds the first send at most `timeout`, and the next sends not at all', async (t) => {
  const sim = await startSimulator(t)
  sim.failNext('gettemplate', { delayMs: HANG_MS }, 10)
  const app = await buildApp(t, sim, { plugin: { timeout: 1500 } })
  await app.wechat.getToken()
  const first = await timed(app.wechat.send(shippedMessage()))
  t.match(first.value, { id: String, msgid: String }, 'the first send went out (key-name rules)')
  t.ok(first.ms >= 1400 && first.ms < PROMPT_MS, `it waited about one timeout for the list (${first.ms} ms)`)
  const second = await timed(app.wechat.send(shippedMessage()))
  t.match(second.value, { id: String }, 'the second one too')
  t.ok(second.ms < 1400, `without waiting for the same load again (${second.ms} ms)`)
  const queued = await timed(app.wechat.enqueue(shippedMessage()))
  t.ok(queued.ms < 1400, `an enqueue does not wait for it either (${queued.ms} ms)`)
  const closed = await timed(app.close())
  t.ok(closed.ms < PROMPT_MS, `close() cuts the hanging read (${closed.ms} ms)`)
})

test('a send waiting for the template list ends at once on close() or its caller\'s abort', async (t) => {
  for (const how of ['close', 'abort'] as const) {
    const sim = await startSimulator(t)
    sim.failNext('gettemplate', { delayMs: HANG_MS }, 10)
    const app = await hangingApp(t, sim, true)
    await app.wechat.getToken()
    const controller = new AbortController()
    const send = timed(app.wechat.send(shippedMessage(), { signal: controller.signal }))
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.equal(sim.counters.gettemplate, 1, `${how}: the list is being read`)
    if (how === 'abort') controller.abort(new Error('the caller gave up'))
    const closed = how === 'close' ? await timed(app.close()) : undefined
    const result = await send
    t.ok(result.ms < PROMPT_MS, `${how}: the send ended after ${result.ms} ms (the read's timeout is ${TIMEOUT_MS} ms)`)
    if (how === 'close') {
      t.match(result.error, { code: 'FST_WECHAT_UPSTREAM' }, 'close: a coded error saying the app is closing')
      t.match(result.error?.message, /closing/)
      t.ok((closed?.ms ?? Infinity) < PROMPT_MS, `close() took ${closed?.ms} ms`)
    } else {
      t.match(result.error?.message, /the caller gave up/, 'abort: rejects with the signal\'s reason')
    }
    t.equal(sim.accepted.length, 0, `${how}: nothing was sent`)
    await app.close()
  }
})

// The waits above listen on signals the plugin shares (close()'s): many sends waiting at once (a cold
// token, the template list's first load) added a listener each, and Node warned of a leak
// (MaxListenersExceededWarning) in the app's output. Failed before.
test('many sends waiting at once for the token and the template list: no MaxListenersExceededWarning', async (t) => {
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(`${warning.name}: ${warning.message}`) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const sim = await startSimulator(t)
  sim.failNext('stable_token', { delayMs: 300 }, 1)
  sim.failNext('gettemplate', { delayMs: 300 }, 1)
  const app = await buildApp(t, sim, { plugin: { queue: false } })
  const controllers = Array.from({ length: 30 }, () => new AbortController())
  const results = await Promise.all([
    ...Array.from({ length: 30 }, () => app.wechat.send(shippedMessage())),
    ...controllers.map((c) => app.wechat.send(shippedMessage(), { signal: c.signal }))
  ])
  t.equal(results.length, 60)
  t.equal(sim.accepted.length, 60)
  await new Promise((resolve) => setImmediate(resolve))
  t.same(warnings.filter((w) => w.includes('MaxListeners')), [], 'no listener warning')
})

// An app closed right after ready() (a short script, a test) logged two warnings for the boot token
// fetch close() cut short: "token fetch failed ... timed out after 5000 ms" (it had not) and "scheduled
// token refresh failed". Nothing failed. Failed before.
test('close() right after ready(): the token fetch it cuts short logs no warning', async (t) => {
  const sim = await startSimulator(t)
  sim.failNext('stable_token', { delayMs: 2000 }, 1)
  const logs = captureLogs('warn')
  const app = await buildApp(t, sim, { logger: logs.logger, plugin: { templates: false } })
  await new Promise((resolve) => setTimeout(resolve, 100))
  await app.close()
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(logs.parsed().map((line) => line.msg), [], 'no warning or error')
})
