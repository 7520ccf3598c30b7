import { once } from 'node:events'
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { test } from 'tap'
import type { Test } from 'tap'
import type { Dispatcher } from 'undici'
import { Deadlines } from '../lib/api/deadlines.js'
import type { DeadlineEntry } from '../lib/api/deadlines.js'
import { Exchange } from '../lib/api/exchange.js'
import { WechatHttpClient } from '../lib/api/http-client.js'
import type { UpstreamFields } from '../lib/api/http-client.js'

/** A local HTTP server answering with `handle`; closed (connections too) at teardown. */
async function serve (t: Test, handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handle)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/**
 * Milliseconds from just before `call` starts until it settles, and its error (if it failed). The
 * clock starts before the call computes its deadline, so a deadline can never look early.
 */
async function timed (call: () => Promise<unknown>): Promise<{ ms: number, error?: Error & Partial<UpstreamFields> }> {
  const start = performance.now()
  try {
    await call()
    return { ms: performance.now() - start }
  } catch (err) {
    return { ms: performance.now() - start, error: err as Error }
  }
}

test('each call keeps its own full deadline on the shared timer', async (t) => {
  const url = await serve(t, () => {}) // never answers
  const http = new WechatHttpClient({ baseUrls: [url], timeout: 400 })
  t.teardown(() => http.close())
  const first = timed(() => http.call('GET', '/a'))
  await new Promise((resolve) => setTimeout(resolve, 250))
  const second = timed(() => http.call('GET', '/b'))
  const [a, b] = await Promise.all([first, second])
  for (const [name, r] of [['first', a], ['second', b]] as const) {
    t.equal(r.error?.timedOut, true, `${name}: timed out`)
    t.equal(r.error?.ambiguous, true, `${name}: may have reached WeChat`)
    t.ok(r.ms >= 400 && r.ms < 2000, `${name}: after its own 400 ms (${Math.round(r.ms)} ms)`)
  }
})

test('a call still waiting for a connection fails at its own deadline', async (t) => {
  const url = await serve(t, () => {}) // never answers
  const http = new WechatHttpClient({ baseUrls: [url], timeout: 200, connections: 1 })
  t.teardown(() => http.close())
  const busy = timed(() => http.call('GET', '/busy'))
  await new Promise((resolve) => setTimeout(resolve, 50))
  const queued = await timed(() => http.call('GET', '/queued'))
  t.equal(queued.error?.timedOut, true, 'timed out')
  t.ok(queued.ms >= 200 && queued.ms < 1500, `at its own deadline, not after the call ahead of it (${Math.round(queued.ms)} ms)`)
  t.equal((await busy).error?.timedOut, true)
})

test('answers: a BOM is dropped like body.text() does, a 5xx body is not read as JSON', async (t) => {
  let status = 200
  const url = await serve(t, (_req, res) => {
    res.statusCode = status
    res.end(status === 200 ? '\ufeff{"errcode":0,"errmsg":"ok","msgid":2100000000000000123}' : '{"errcode":0}')
  })
  const http = new WechatHttpClient({ baseUrls: [url], timeout: 10_000 })
  t.teardown(() => http.close())
  t.same(await http.call('POST', '/send', { json: { a: 1 } }), { errcode: 0, errmsg: 'ok', msgid: '2100000000000000123' })
  status = 503
  const { error } = await timed(() => http.call('GET', '/x'))
  t.equal(error?.httpStatus, 503)
  t.equal(error?.timedOut, false)
})

test('many calls finishing out of order: none is timed out early, the late one is', async (t) => {
  const url = await serve(t, (req, res) => {
    const delay = Number(new URL(req.url as string, 'http://x').searchParams.get('ms'))
    setTimeout(() => res.end('{"errcode":0,"errmsg":"ok"}'), delay)
  })
  // Answers within 120 ms against a 2 s deadline: only a very late one may time out, never early.
  const http = new WechatHttpClient({ baseUrls: [url], timeout: 2000 })
  t.teardown(() => http.close())
  const delays = Array.from({ length: 60 }, (_, i) => (i * 37) % 120)
  const results = await Promise.all([...delays.map((ms) => timed(() => http.call('GET', '/d', { query: { ms } }))), timed(() => http.call('GET', '/d', { query: { ms: 4000 } }))])
  const late = results.pop()
  t.ok(results.every((r) => r.error === undefined), 'all answered in time')
  t.equal(late?.error?.timedOut, true, 'the slow one timed out')
  t.ok((late?.ms ?? 0) >= 2000 && (late?.ms ?? 0) < 3900, `at its deadline (${Math.round(late?.ms ?? 0)} ms)`)
})

test('a request the pool has not started yet fails at its deadline and is aborted when it starts', async (t) => {
  let handler: Dispatcher.DispatchHandler | undefined
  const pool = { dispatch: (_options: unknown, h: Dispatcher.DispatchHandler) => { handler = h; return true } } as unknown as Dispatcher
  const deadlines = new Deadlines(50)
  t.teardown(() => deadlines.close())
  const exchange = new Exchange(deadlines)
  const answer = exchange.start(pool, { method: 'GET', path: '/' })
  exchange.expire()
  await t.rejects(answer, { code: 'WECHAT_DEADLINE', message: 'no answer within 50 ms' })
  let aborted: unknown
  handler?.onRequestStart?.({ abort: (reason: unknown) => { aborted = reason } } as unknown as Dispatcher.DispatchController, {})
  t.match(aborted, { code: 'WECHAT_DEADLINE' }, 'aborted before it is written')
  handler?.onResponseError?.({} as Dispatcher.DispatchController, new Error('late'))
  t.pass('a late error after the deadline changes nothing')
})

test('a dispatcher that throws fails the call instead of leaving it pending', async (t) => {
  const pool = { dispatch: () => { throw new Error('closed') } } as unknown as Dispatcher
  const deadlines = new Deadlines(50)
  t.teardown(() => deadlines.close())
  await t.rejects(new Exchange(deadlines).start(pool, { method: 'GET', path: '/' }), /closed/)
})

test('a finished call is not kept alive by the deadline queue while later calls are in flight', async (t) => {
  // Calls always overlap under load, so the queue rarely empties: a finished entry left in its
  // slot stayed reachable (and was promoted to the old generation) until the queue was compacted.
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const deadlines = new Deadlines(60_000)
  t.teardown(() => deadlines.close())
  const entry = (): DeadlineEntry => ({ deadline: deadlines.next(), done: false, expire () {} })
  let finished: DeadlineEntry | undefined = entry()
  const gone = new WeakRef(finished)
  const later = entry()
  deadlines.add(finished)
  deadlines.add(later)
  deadlines.finish(finished)
  finished = undefined
  await new Promise((resolve) => setImmediate(resolve))
  gc()
  t.equal(gone.deref(), undefined, 'the finished entry was collected')
  deadlines.finish(later)
})

// A 200 whose JSON is not an object (a proxy's `null`, `[]`, `"ok"`) was read as errcode 0: a send
// counted as sent when nothing proves WeChat took it. It is an ambiguous upstream failure now.
test('a 200 whose JSON is not an object is an ambiguous failure, not a success', async (t) => {
  for (const text of ['null', '[]', '"ok"', '1', 'true', '[{"errcode":0}]']) {
    const url = await serve(t, (req, res) => { res.setHeader('content-type', 'application/json'); res.end(text) })
    const http = new WechatHttpClient({ baseUrls: [url], timeout: 10_000 })
    t.teardown(() => http.close())
    const { error } = await timed(() => http.call('POST', '/cgi-bin/message/subscribe/send', { json: {} }))
    t.match(error, { code: 'FST_WECHAT_UPSTREAM', ambiguous: true, httpStatus: 200, message: /not a JSON object/ }, text)
  }
  const url = await serve(t, (req, res) => { res.end('<html>busy</html>') })
  const http = new WechatHttpClient({ baseUrls: [url], timeout: 10_000 })
  t.teardown(() => http.close())
  const { error } = await timed(() => http.call('GET', '/x'))
  t.match(error, { code: 'FST_WECHAT_UPSTREAM', message: /HTTP 200 \(the answer was not JSON\)/ }, 'the reason says what was wrong')
})
