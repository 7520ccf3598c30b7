/**
 * Property-based fuzzing (fast-check) of the HTTP routes (`routes: { unprotected: true }`: POST
 * /messages and /messages/batch, GET /messages/:id, /stats, /credits/:openid, /templates,
 * /dashboard), on the
 * memory store and on Redis: generated methods, paths, query strings, content types and bodies
 * (message-shaped objects with wrong types, hostile keys and keyword values, batches, arbitrary
 * JSON, raw text), with WeChat faults mixed in. Every answer is a 2xx or a coded error whose body
 * says the same status; never a 500, never a crash, never an unhandled rejection. FUZZ_RUNS and
 * FUZZ_SEED tune and replay a run.
 */
import { test } from 'tap'
import type { Test } from 'tap'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import type { SimFault } from '../lib/testing/index.js'
import { buildApp, startSimulator } from './helpers/app.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'

const RUNS = Number(process.env.FUZZ_RUNS ?? 500)
// A fixed seed by default so CI is repeatable; FUZZ_SEED=<n> explores (and replays) other runs.
const SEED = process.env.FUZZ_SEED === undefined ? 20261127 : Number(process.env.FUZZ_SEED)

const unhandled: unknown[] = []
const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
process.on('unhandledRejection', onUnhandled)

const nasty = fc.string({
  unit: fc.oneof(
    fc.constantFrom('<', '>', '&', '"', '\'', '/', '\\', '{', '}', ':', '%', '?', '#', '~', '¥', '元', '.', ' '),
    fc.constantFrom('\u0000', '\u0001', '\u007f', '\uffff', '\ud800', '\r', '\n', '\t', '\u202e'),
    fc.constantFrom('订', '阅', '已', '发', '货', '😀'),
    fc.constantFrom('a', 'Z', '0', '9', '_', '-')
  ),
  maxLength: 40
})
const junk = fc.oneof(nasty, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant([]), fc.constant({}), fc.bigInt().map(String))

/** Keyword values that pass, fail or sit on the edge of WECHAT.md §3's rules. */
const keywordValue = fc.oneof(
  fc.constantFrom('SO2026000001', 'Blue ceramic mug x2', '¥58.00', '58.00元', '2026-03-01 14:05', '2026年3月1日 15:01', '已发货', '配送中', '15:01~16:00', '', ' '),
  nasty,
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.double(),
  nasty.map((value) => ({ value })),
  fc.integer().map((value) => ({ value })),
  fc.record({ value: junk, extra: junk }, { requiredKeys: [] }),
  junk
)
const keywordName = fc.oneof(
  fc.constantFrom('character_string1', 'thing2', 'amount3', 'time4', 'phrase5', 'thing1', 'date2', 'number1', 'short_thing9', 'enum_string2', '__proto__', 'constructor', ''),
  nasty
)

const message = fc.record({
  toUser: fc.oneof(fc.stringMatching(/^o[A-Za-z0-9_-]{5,30}$/), nasty, junk, fc.string({ minLength: 120, maxLength: 140 })),
  templateId: fc.oneof(fc.constantFrom(...Object.values(DEMO_TEMPLATE_IDS)), nasty, junk),
  data: fc.oneof(
    fc.dictionary(keywordName, keywordValue, { maxKeys: 8 }),
    fc.constant({ character_string1: 'SO2026000001', thing2: 'Blue ceramic mug x2', amount3: '¥58.00', time4: '2026-03-01 14:05', phrase5: '已发货' }),
    junk
  ),
  page: fc.oneof(fc.constant('pages/order?id=1'), nasty, junk, fc.string({ minLength: 1000, maxLength: 1100 })),
  miniprogramState: fc.oneof(fc.constantFrom('developer', 'trial', 'formal'), nasty, junk),
  lang: fc.oneof(fc.constantFrom('zh_CN', 'en_US', 'zh_HK', 'zh_TW'), nasty, junk),
  idempotencyKey: fc.oneof(nasty, junk, fc.string({ minLength: 195, maxLength: 210 })),
  template: junk,
  __proto__: fc.constant({ polluted: true }),
  extra: junk
}, { requiredKeys: [] })

/** A complete valid message now and then, so the sending and queueing paths run too. */
const goodMessage = fc.nat(1_000_000).map((n) => ({
  toUser: `oFuzz-${n}`,
  templateId: DEMO_TEMPLATE_IDS.orderShipped,
  data: { character_string1: `SO${n}`, thing2: 'Blue ceramic mug x2', amount3: '¥58.00', time4: '2026-03-01 14:05', phrase5: '已发货' }
}))
const anyMessage = fc.oneof({ weight: 3, arbitrary: message }, { weight: 1, arbitrary: goodMessage })

/** Percent-encoded; a lone surrogate (which encodeURIComponent refuses) becomes an invalid UTF-8 escape. */
function enc (value: string): string {
  try { return encodeURIComponent(value) } catch { return `%ED%A0%80${value.length}` }
}

const CONTENT_TYPES = ['application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml']

/** One request to one of the routes, or near them. */
const request = fc.oneof(
  fc.record({
    method: fc.constant('POST'),
    url: fc.constantFrom('/wechat/messages', '/wechat/messages?queue=true', '/wechat/messages?queue=false', '/wechat/messages?queue=1', '/wechat/messages?queue=yes',
      '/wechat/messages?queue=true&queue=false', '/wechat/messages?other=1', '/wechat/messages?queue=%00'),
    body: fc.oneof({ weight: 4, arbitrary: anyMessage.map((m) => JSON.stringify(m)) }, fc.jsonValue().map((v) => JSON.stringify(v)), nasty, fc.constant('')),
    contentType: fc.option(fc.oneof({ weight: 5, arbitrary: fc.constant('application/json') }, fc.constantFrom(...CONTENT_TYPES), nasty), { nil: undefined })
  }),
  fc.record({
    method: fc.constant('POST'),
    url: fc.constant('/wechat/messages/batch'),
    body: fc.oneof(
      { weight: 4, arbitrary: fc.record({ messages: fc.oneof(fc.array(fc.oneof(anyMessage, junk, fc.array(goodMessage, { maxLength: 2 })), { maxLength: 12 }), junk), idempotencyKey: fc.oneof(nasty, junk) }, { requiredKeys: ['messages'] }).map((b) => JSON.stringify(b)) },
      fc.jsonValue().map((v) => JSON.stringify(v)),
      nasty
    ),
    contentType: fc.option(fc.oneof({ weight: 5, arbitrary: fc.constant('application/json') }, fc.constantFrom(...CONTENT_TYPES)), { nil: undefined })
  }),
  fc.record({
    method: fc.constantFrom('GET', 'GET', 'DELETE', 'PUT', 'HEAD'),
    url: fc.oneof(
      nasty.map((id) => `/wechat/messages/${enc(id)}`),
      fc.uuid().map((id) => `/wechat/messages/${id}`),
      fc.string({ minLength: 190, maxLength: 230 }).map((id) => `/wechat/messages/${enc(id)}`),
      fc.constantFrom('/wechat/messages/', '/wechat/messages/%', '/wechat/messages/..%2f..', '/wechat/stats', '/wechat/stats?x=1', '/wechat/dashboard', '/wechat/nothing'),
      fc.tuple(fc.oneof(nasty, fc.constant('5')), fc.oneof(nasty, fc.integer().map(String))).map(([token, refresh]) => `/wechat/dashboard?token=${enc(token)}&refresh=${enc(refresh)}`),
      fc.oneof(nasty, fc.stringMatching(/^o[A-Za-z0-9_-]{5,30}$/), fc.string({ minLength: 120, maxLength: 140 })).map((openid) => `/wechat/credits/${enc(openid)}`),
      fc.oneof(fc.constantFrom('true', 'false', '1', ''), nasty).map((refresh) => `/wechat/templates?refresh=${enc(refresh)}`),
      fc.constantFrom('/wechat/templates', '/wechat/templates?refresh=true&x=1', '/wechat/credits/')
    ),
    body: fc.constant(undefined),
    contentType: fc.constant(undefined)
  })
)

/** WeChat faults that answer at once (no timeouts: the app waits 5 s for those), on any endpoint. */
const fault = fc.option(fc.constantFrom<SimFault>(
  { errcode: -1 }, { errcode: 45011 }, { errcode: 45009 }, { errcode: 40001 }, { errcode: 43101 }, { errcode: 47003 }, { errcode: 40003 },
  { httpStatus: 502 }, { httpStatus: 503 }, { drop: true }, { drop: true, processed: true }, { errcode: 0, omitMsgid: true }
), { freq: 4, nil: undefined })

async function fuzz (t: Test, app: FastifyInstance, failNext: (f: SimFault) => void, runs: number): Promise<void> {
  const statuses: Record<string, number> = {}
  await fc.assert(fc.asyncProperty(request, fault, async (req, f) => {
    if (f) failNext(f)
    const res = await app.inject({
      method: req.method as 'GET',
      url: req.url,
      ...(req.body === undefined ? {} : { body: req.body }),
      headers: req.contentType === undefined ? {} : { 'content-type': req.contentType }
    })
    statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
    if (res.statusCode >= 500 && res.statusCode !== 502 && res.statusCode !== 503 && res.statusCode !== 504) {
      throw new Error(`${req.method} ${req.url} → ${res.statusCode}: ${res.body.slice(0, 300)}`)
    }
    if (res.statusCode >= 400 && req.method !== 'HEAD' && res.headers['content-type']?.toString().includes('json')) {
      const body = JSON.parse(res.body) as { statusCode?: number, code?: string }
      if (body.code === 'FST_WECHAT_INTERNAL') throw new Error(`internal error: ${res.body}`)
      if (body.statusCode !== undefined && body.statusCode !== res.statusCode) throw new Error(`status ${res.statusCode} but body says ${body.statusCode}`)
    }
    // 502-504 are WeChat's or the store's trouble; they must carry a code that says so.
    if (res.statusCode >= 502 && req.method !== 'HEAD') { // a HEAD answer has no body
      const code = (JSON.parse(res.body) as { code?: string }).code ?? ''
      if (!/^FST_WECHAT_(API|TOKEN|UPSTREAM|QUEUE|STORE)$/.test(code)) throw new Error(`${res.statusCode} with code ${code}`)
    }
  }), { numRuns: runs, seed: SEED, endOnFailure: true })
  t.comment(`answers by status: ${JSON.stringify(statuses)}`)
  const after = await app.inject({ method: 'GET', url: '/wechat/stats' })
  t.equal(after.statusCode, 200, 'the routes still answer after the fuzzing')
  const stats = JSON.parse(after.body) as { total: number }
  t.ok(stats.total > 0, `some generated messages were sent or queued (${stats.total} records)`)
}

test('routes on the memory store: generated requests never get a 500', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { routes: { unprotected: true }, queue: { attempts: 2 } } })
  await fuzz(t, app, (f) => sim.failNext('*', f), RUNS)
})

test('routes on Redis (durable queue): generated requests never get a 500', async (t) => {
  const sim = await startSimulator(t)
  const redis = await startRedis()
  t.teardown(() => redis.cleanup())
  const app = await buildApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix: uniquePrefix('fuzz'), routes: { unprotected: true }, queue: { attempts: 2 } } })
  await fuzz(t, app, (f) => sim.failNext('*', f), Math.ceil(RUNS / 2))
})

test('no unhandled rejection during the fuzzing', async (t) => {
  await new Promise((resolve) => setTimeout(resolve, 100))
  process.off('unhandledRejection', onUnhandled)
  t.same(unhandled.map(String), [])
})
