import { test } from 'tap'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import { KEY, pushApp, TOKEN } from './push-helpers.js'
import { until } from './queue-helpers.js'

// send(message, { idempotencyKey }) claimed the key before the call and kept it whatever happened:
// a send that certainly failed (-1 three times, 40003) answered its retry under the same key with
// `{ id, duplicate: true }` (looking like success) and nothing was ever sent; under credits:
// 'enforce' a refusal for want of credit left the key claimed by a 'sending' record that never
// went out (stats counted it 'sending' for 7 days). Both failed before.

for (const store of ['memory', 'redis'] as const) {
  test(`send with a key (${store}): a certain failure frees the key, a repeat sends; an answered one is a duplicate`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, store)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('sendkey') } })
    await app.wechat.getToken()

    sim.failNext('send', { errcode: -1 }, 3)
    const failed = await app.wechat.send(shippedMessage(), { idempotencyKey: 'order-1' }).then((): Record<string, unknown> => ({}), (err: unknown) => err as Record<string, unknown>)
    t.match(failed, { code: 'FST_WECHAT_API', errcode: -1, outcome: 'failed' })
    const retried = await app.wechat.send(shippedMessage(), { idempotencyKey: 'order-1' })
    t.ok(retried.msgid, 'the repeat was sent')
    t.not(retried.id, failed.messageId, 'as a message of its own')
    t.equal(retried.duplicate, undefined)
    t.match(await app.wechat.status(failed.messageId as string), { status: 'failed', errcode: -1 }, 'the failed one keeps its record')
    t.equal(sim.accepted.length, 1)

    const again = await app.wechat.send(shippedMessage(), { idempotencyKey: 'order-1' })
    t.same(again, { id: retried.id, msgid: retried.msgid, duplicate: true }, 'a repeat of a sent message: the first one, nothing sent')
    t.equal(sim.accepted.length, 1)

    // a timeout then 43101: maybe delivered ('unknown'): the key stays taken
    sim.failNext('send', { drop: true })
    sim.failNext('send', { errcode: 43101 })
    const unknown = await app.wechat.send(shippedMessage(), { idempotencyKey: 'order-2' }).then((): Record<string, unknown> => ({}), (err: unknown) => err as Record<string, unknown>)
    t.match(unknown, { outcome: 'unknown' })
    t.match(await app.wechat.send(shippedMessage(), { idempotencyKey: 'order-2' }), { id: unknown.messageId, duplicate: true }, 'an unknown one may be delivered: not sent again')
    t.equal(sim.accepted.length, 1)
    await until('its record is written', async () => (await app.wechat.status(unknown.messageId as string))?.status === 'unknown')
    t.equal((await app.wechat.stats()).noConsent, 0, "an 'unknown' 43101 (after a lost answer) is not counted as the user's refusal")
  })

  // A queued message's failure did not free its key (only a direct send's did): send() under that key
  // answered `{ id, duplicate: true }` (HTTP 200 on POST /messages) and sent nothing. Failed before.
  test(`send with a key whose queued message certainly failed (${store}): the key is free, the send goes out`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, store)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('sendkey') } })
    await app.wechat.getToken()
    sim.failNext('send', { errcode: 40003 })
    const [queued] = await app.wechat.enqueue(shippedMessage(), { idempotencyKey: 'queued-1' })
    await until('the queued message failed', async () => (await app.wechat.status(queued?.id as string))?.status === 'failed')
    const sent = await app.wechat.send(shippedMessage(), { idempotencyKey: 'queued-1' })
    t.ok(sent.msgid, 'sent')
    t.equal(sent.duplicate, undefined, 'not answered as a duplicate of the failed one')
    t.not(sent.id, queued?.id)
    t.equal(sim.accepted.length, 1)
    t.same(await app.wechat.send(shippedMessage(), { idempotencyKey: 'queued-1' }), { id: sent.id, msgid: sent.msgid, duplicate: true }, 'a repeat now answers the sent one')
    t.match(await app.wechat.status(queued?.id as string), { status: 'failed', errcode: 40003 }, 'the failed one keeps its record')
  })

  test(`send with a key under credits: 'enforce' (${store}): a refusal leaves nothing claimed`, async (t) => {
    const sim = await startSimulator(t, { requireCredits: true })
    const redisUrl = await redisFor(t, store)
    const { app, url } = await pushApp(t, sim, { listen: true, redisUrl, plugin: { credits: 'enforce', keyPrefix: uniquePrefix('sendkey') } })
    sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY, mode: 'safe', format: 'xml' })
    const openid = 'oCredit-user-0000000002'
    await t.rejects(app.wechat.send(shippedMessage(openid), { idempotencyKey: 'ship-7' }), { code: 'FST_WECHAT_NO_CREDIT' })
    t.match(await app.wechat.stats(), { total: 0, sending: 0 }, 'no record stuck in sending')

    await sim.popup([{ openid, templateId: DEMO_TEMPLATE_IDS.orderShipped, status: 'accept' }])
    await sim.pushesSettled()
    await until('the credit is in', async () => (await app.wechat.credits(openid))[DEMO_TEMPLATE_IDS.orderShipped] === 1)
    const sent = await app.wechat.send(shippedMessage(openid), { idempotencyKey: 'ship-7' })
    t.ok(sent.msgid, 'once the user subscribed, the same key sends')
    t.equal(sent.duplicate, undefined)
    t.equal(sim.accepted.length, 1)
    // That used the user's only credit: a repeat (its answer was lost) is the duplicate, not a 409.
    t.same(await app.wechat.send(shippedMessage(openid), { idempotencyKey: 'ship-7' }), { id: sent.id, msgid: sent.msgid, duplicate: true })

    // enqueue alike: a repeat finds its first message; only a message queued now takes a credit
    await sim.popup([{ openid, templateId: DEMO_TEMPLATE_IDS.orderShipped, status: 'accept' }])
    await sim.pushesSettled()
    await until('a credit again', async () => (await app.wechat.credits(openid))[DEMO_TEMPLATE_IDS.orderShipped] === 1)
    const [queued] = await app.wechat.enqueue(shippedMessage(openid), { idempotencyKey: 'ship-8' })
    await until('sent', async () => ['sent', 'delivered'].includes(String((await app.wechat.status(queued?.id as string))?.status)))
    t.match(await app.wechat.enqueue(shippedMessage(openid), { idempotencyKey: 'ship-8' }), [{ id: queued?.id }])
    // two messages, one credit: neither is queued, the credit stays, no claim is left
    await sim.popup([{ openid, templateId: DEMO_TEMPLATE_IDS.orderShipped, status: 'accept' }])
    await sim.pushesSettled()
    await until('a credit again', async () => (await app.wechat.credits(openid))[DEMO_TEMPLATE_IDS.orderShipped] === 1)
    const before = await app.wechat.stats()
    await t.rejects(app.wechat.enqueue([shippedMessage(openid), shippedMessage(openid)], { idempotencyKey: 'ship-9' }), { code: 'FST_WECHAT_NO_CREDIT' })
    t.equal((await app.wechat.credits(openid))[DEMO_TEMPLATE_IDS.orderShipped], 1, 'the credit taken by the first went back')
    t.equal((await app.wechat.stats()).total, before.total, 'no record left')
    await t.rejects(app.wechat.enqueue([shippedMessage(openid), shippedMessage(openid)]), { code: 'FST_WECHAT_NO_CREDIT' })
    t.equal((await app.wechat.credits(openid))[DEMO_TEMPLATE_IDS.orderShipped], 1, 'without a key too')
  })
}

// Redis stores a lone surrogate as U+FFFD: 'k\ud800' and 'k\ud801' were one key there (the second
// message answered as a duplicate, never sent) and two in memory. Refused now, on both. Failed before.
test('an idempotencyKey with a lone surrogate is refused before anything is claimed', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  for (const key of ['k\ud800', 'k\udc00x', '\ud83d']) {
    await t.rejects(app.wechat.send(shippedMessage(), { idempotencyKey: key }), { code: 'FST_WECHAT_INVALID_MESSAGE', violations: [{ key: 'idempotencyKey' }] })
    await t.rejects(app.wechat.enqueue(shippedMessage(), { idempotencyKey: key }), { code: 'FST_WECHAT_INVALID_MESSAGE' })
  }
  t.match(await app.wechat.send(shippedMessage(), { idempotencyKey: 'k\ud83d\ude00' }), { msgid: String }, 'a whole surrogate pair (an emoji) is fine')
  t.equal(sim.accepted.length, 1)
})

// An already aborted signal used to be ignored: the message went out. Failed before.
test('send with an aborted signal sends nothing and rejects with the signal\'s reason', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  await t.rejects(app.wechat.send(shippedMessage(), { signal: AbortSignal.abort() }), { name: 'AbortError' })
  await t.rejects(app.wechat.send(shippedMessage(), { idempotencyKey: 'aborted-1', signal: AbortSignal.abort(new Error('caller gave up')) }), { message: 'caller gave up' })
  t.equal(sim.counters.send, 0)
  t.ok((await app.wechat.send(shippedMessage(), { idempotencyKey: 'aborted-1' })).msgid, 'the key was not claimed')
})

// A signal aborted while the send waited (for the token, the template list) was only checked
// before the waits: the message went out after its caller gave up. Failed before (1 call, resolved).
test('a send aborted while it waits for its token sends nothing: it rejects with the reason and the key is free again', async (t) => {
  const sim = await startSimulator(t, { latencyMs: 300 })
  const app = await buildApp(t, sim, { plugin: { templates: false } })
  const controller = new AbortController()
  setTimeout(() => controller.abort(new Error('caller gave up')), 50)
  const sending = app.wechat.send(shippedMessage(), { idempotencyKey: 'aborted-waiting', signal: controller.signal })
  await t.rejects(sending, { message: 'caller gave up' })
  t.equal(sim.counters.send, 0, 'no subscribe/send call')
  t.ok(sim.counters.stable_token >= 1, 'it was waiting for the token')
  const again = await app.wechat.send(shippedMessage(), { idempotencyKey: 'aborted-waiting' })
  t.ok(again.msgid, 'the key was released: the retry under it sends')
  t.notOk(again.duplicate)
  t.equal(sim.counters.send, 1)
})

// app.close() while a send waited for its token: the send now ends with the coded "closing" error
// (not the AbortController's bare AbortError) and nothing is sent.
test('a send waiting for its token when the app closes: FST_WECHAT_UPSTREAM, outcome failed, nothing sent', async (t) => {
  const sim = await startSimulator(t, { latencyMs: 300 })
  const app = await buildApp(t, sim, { plugin: { templates: false } })
  const sending = app.wechat.send(shippedMessage())
  sending.catch(() => {})
  await new Promise((resolve) => setTimeout(resolve, 50))
  await app.close()
  const err = await sending.then(() => ({}) as Record<string, unknown>, (e: unknown) => e as Record<string, unknown>)
  t.match(err, { code: 'FST_WECHAT_UPSTREAM', outcome: 'failed', message: /closing/ })
  t.type(err.messageId, 'string', 'it names the message')
  t.equal(sim.counters.send, 0)
})

// Aborting during a backoff cut the wait short and the send went on: with WeChat answering -1 every
// attempt still went out; after a 5xx the next call went out at once. Failed before (5 and 2 calls).
test('aborting a send during its backoff stops the retries: it ends with the last attempt\'s error', async (t) => {
  for (const [fault, code] of [[{ errcode: -1 }, 'FST_WECHAT_API'], [{ httpStatus: 503 }, 'FST_WECHAT_UPSTREAM']] as const) {
    const sim = await startSimulator(t)
    const app = await buildApp(t, sim, { plugin: { retry: { attempts: 5, minDelay: 5000, maxDelay: 5000 } } })
    await app.wechat.getToken()
    const before = sim.counters.send
    sim.failNext('send', fault, 5)
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 100)
    const started = Date.now()
    await t.rejects(app.wechat.send(shippedMessage(), { signal: controller.signal }), { code }, `${code}: this attempt's error`)
    t.equal(sim.counters.send - before, 1, `${code}: no call after the abort`)
    t.ok(Date.now() - started < 3000, `${code}: the backoff (5 s) was cut short`)
  }
})
