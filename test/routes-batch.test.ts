import { test } from 'tap'
import { shippedMessage, startSimulator } from './helpers/app.js'
import { call, postJson, prng, routesApp, waitFor } from './routes-helpers.js'

test('batch: one bad item does not sink the others; the good ones are delivered', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const good = [shippedMessage('oUser-batch-1'), shippedMessage('oUser-batch-2')]
  const messages = [good[0], { ...shippedMessage(), lang: 'fr' }, 42, [shippedMessage()], {}, good[1]]
  const res = await postJson(app, '/wechat/messages/batch', { messages })
  t.equal(res.statusCode, 202)
  const body = res.json()
  t.match(body, { accepted: 2, rejected: 4 })
  t.same(body.results.map((r: { index: number }) => r.index), [0, 1, 2, 3, 4, 5], 'one result per item, in order')
  for (const index of [1, 2, 3, 4]) {
    t.match(body.results[index], { index, error: { code: 'FST_WECHAT_INVALID_MESSAGE', message: /Invalid subscribe message/ } }, `item ${index} refused`)
    t.notOk(body.results[index].id)
  }
  t.match(body.results[1].error.message, /lang must be/)
  t.match(body.results[3].error.message, /must be an object/, 'a nested array is one bad item, not several messages')
  for (const index of [0, 5]) t.match(body.results[index], { index, id: /\w/, status: 'pending' })
  await waitFor(async () => sim.accepted.length === 2)
  t.same(sim.accepted.map((m) => m.touser).sort(), ['oUser-batch-1', 'oUser-batch-2'])
  // (the record turns sent once the worker has WeChat's answer, a moment after WeChat has the message)
  await waitFor(async () => (await app.wechat.status(body.results[5].id))?.status === 'sent', 10_000)
  const record = (await call(app, 'GET', `/wechat/messages/${body.results[5].id}`)).json()
  t.match(record, { status: 'sent', source: 'queue' })
})

test('batch: every item refused is still a 202 listing why', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const res = await postJson(app, '/wechat/messages/batch', { messages: [null, 'x'] })
  t.equal(res.statusCode, 202)
  t.match(res.json(), { accepted: 0, rejected: 2 })
})

test('batch: 500 items are fine, 501 or none or a bad envelope are 400', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const full = await postJson(app, '/wechat/messages/batch', { messages: Array.from({ length: 500 }, () => shippedMessage()) })
  t.equal(full.statusCode, 202)
  t.match(full.json(), { accepted: 500, rejected: 0 })
  const envelopes: [string, unknown, RegExp][] = [
    ['501 items', { messages: Array.from({ length: 501 }, () => shippedMessage()) }, /body\/messages .*500/],
    ['no items', { messages: [] }, /body\/messages/],
    ['no messages field', { message: [shippedMessage()] }, /body\/messages is required/],
    ['messages not an array', { messages: shippedMessage() }, /body\/messages/],
    ['an unknown field', { messages: [shippedMessage()], delay: 10 }, /body\/delay is not a known field/],
    ['a bare array', [shippedMessage()], /body Expected object/],
    ['a key too long for its :index suffix', { messages: [shippedMessage()], idempotencyKey: 'k'.repeat(191) }, /idempotencyKey/]
  ]
  for (const [label, body, message] of envelopes) {
    const res = await postJson(app, '/wechat/messages/batch', body)
    t.equal(res.statusCode, 400, label)
    t.match(res.json(), { statusCode: 400, code: 'FST_ERR_VALIDATION', message }, label)
  }
  await waitFor(async () => (await app.wechat.stats()).sent === 500, 20_000)
  t.equal(sim.accepted.length, 500)
})

test('batch idempotencyKey: a repeated batch returns the same ids and sends nothing twice', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const batch = { messages: [shippedMessage(), shippedMessage(), shippedMessage()], idempotencyKey: 'import-2026-03-01' }
  const first = (await postJson(app, '/wechat/messages/batch', batch)).json()
  const again = (await postJson(app, '/wechat/messages/batch', batch)).json()
  t.same(again.results.map((r: { id: string }) => r.id), first.results.map((r: { id: string }) => r.id))
  t.same(first.results.map((r: { duplicate?: true }) => r.duplicate), [undefined, undefined, undefined])
  t.same(again.results.map((r: { duplicate?: true }) => r.duplicate), [true, true, true], 'each repeat says so')
  await waitFor(async () => sim.accepted.length === 3)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(sim.accepted.length, 3)
  t.match((await app.wechat.status(first.results[1].id)), { idempotencyKey: 'import-2026-03-01:1' })
})

const FIELDS = ['toUser', 'templateId', 'data', 'page', 'lang', 'miniprogramState', 'idempotencyKey', 'value', 'messages', '__proto__', 'constructor', 'thing2', '']
const STRINGS = ['', ' ', 'x'.repeat(300), '<script>alert(1)</script>', '\u0000\u202e', '已发货', 'zh_CN', 'formal', '2026-03-01 14:05', '¥58.00', '\ud800']

/** A random JSON value, weighted towards the shapes the routes expect. */
function randomValue (rand: () => number, depth = 0): unknown {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)] as T
  switch (Math.floor(rand() * (depth > 3 ? 5 : 7))) {
    case 0: return null
    case 1: return rand() < 0.5
    case 2: return pick([0, -1, 1.5, 2 ** 53 + 2, -1e308, 45011, 20260301])
    case 3: return pick(STRINGS)
    case 4: return rand().toString(36).slice(2, 2 + Math.floor(rand() * 12))
    case 5: return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(rand, depth + 1))
    default: return Object.fromEntries(Array.from({ length: Math.floor(rand() * 5) }, () => [pick(FIELDS), randomValue(rand, depth + 1)]))
  }
}

/** A valid message with a few fields dropped, replaced or added. */
function mutatedMessage (rand: () => number): unknown {
  const message: Record<string, unknown> = { ...shippedMessage(), data: { ...shippedMessage().data } }
  for (let i = Math.floor(rand() * 3); i > 0; i--) {
    const field = FIELDS[Math.floor(rand() * FIELDS.length)] as string
    const data = message.data
    const target = rand() < 0.4 && data !== null && typeof data === 'object' ? data as Record<string, unknown> : message
    if (rand() < 0.3) delete target[field]
    else target[field] = randomValue(rand, 2)
  }
  return message
}

test('500 random bodies (seeded) to each POST route: never a 500', async (t) => {
  const sim = await startSimulator(t)
  const app = await routesApp(t, sim)
  const seed = 20260301
  const rand = prng(seed)
  const statuses = new Map<number, number>()
  for (let i = 0; i < 500; i++) {
    const one = rand() < 0.7 ? mutatedMessage(rand) : randomValue(rand)
    const many = rand() < 0.7
      ? { messages: Array.from({ length: Math.floor(rand() * 6) }, () => rand() < 0.6 ? mutatedMessage(rand) : randomValue(rand)) }
      : randomValue(rand)
    const text = rand() < 0.05 ? JSON.stringify(one).slice(0, -1) : JSON.stringify(one)
    for (const [url, payload] of [[`/wechat/messages${rand() < 0.2 ? '?queue=true' : ''}`, text], ['/wechat/messages/batch', JSON.stringify(many)]] as const) {
      const res = await call(app, 'POST', url, { payload: payload ?? 'null', headers: { 'content-type': 'application/json' } })
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      if (res.statusCode >= 500) t.fail(`seed ${seed}, body ${i} to ${url} → ${res.statusCode}: ${res.body.slice(0, 200)}`)
      if (res.statusCode >= 400) t.ok(res.json().message, 'every refusal has a message')
    }
  }
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`)
  t.ok((statuses.get(200) ?? 0) > 20 && (statuses.get(202) ?? 0) > 20 && (statuses.get(400) ?? 0) > 100, 'the bodies reached every outcome')
})
