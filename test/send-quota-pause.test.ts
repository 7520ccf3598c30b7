import { test } from 'tap'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import { numbered, sleep, statusCounts, until } from './queue-helpers.js'
import { SimulatorClock } from '../lib/testing/index.js'
import { msUntilQuotaReset } from '../lib/api/quota.js'

// DESIGN.md "Error classes": quota, 45009 → stop sending until the quota resets (WECHAT.md §2.3 "do not
// hammer"). Only the queue stopped: every direct send() still called WeChat after a 45009, and a direct
// send's 45009 did not pause the queue (an audit against WECHAT.md). Failed before (the second direct
// send reached the simulator; the enqueued message was sent).

for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: a direct send's 45009 pauses sending: the next direct send fails 45009 without a call, the queue holds its messages; resumeQueue() ends both`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('send-pause') } })
    await app.wechat.getToken()
    sim.failNext('send', { errcode: 45009 })
    t.match(await app.wechat.send(shippedMessage()).catch((e: unknown) => e), { code: 'FST_WECHAT_API', errcode: 45009, errorClass: 'quota' }, 'WeChat\'s 45009')
    const calls = sim.counters.send

    const held = await app.wechat.send(shippedMessage()).catch((e: unknown) => e) as { errcode: number, retryAfter: number, messageId: string, message: string }
    t.match(held, { code: 'FST_WECHAT_API', errcode: 45009, errorClass: 'quota', retryable: true, outcome: 'failed' }, 'the next one fails as WeChat\'s 45009 would')
    t.ok(held.retryAfter > 0 && held.retryAfter <= msUntilQuotaReset(Date.now()) + 1000, `retryAfter until the reset (${held.retryAfter} ms)`)
    t.match(held.message, /paused until the daily quota resets/)
    t.equal(sim.counters.send, calls, 'without a call to WeChat')
    await until('its record written', async () => (await app.wechat.status(held.messageId))?.status === 'failed')
    t.match(await app.wechat.status(held.messageId), { status: 'failed', errcode: 45009, attempts: 0 })

    const [queued] = await app.wechat.enqueue(numbered('P', 1))
    await sleep(700)
    t.equal(sim.counters.send, calls, 'the queue does not send either')
    t.equal((await app.wechat.status(queued?.id as string))?.status, 'pending')

    await app.wechat.resumeQueue()
    t.ok((await app.wechat.send(shippedMessage())).msgid, 'after resumeQueue() a direct send goes out')
    await until('the queued message sent', async () => (await app.wechat.status(queued?.id as string))?.status === 'sent')
  })

  test(`${kind} queue: a 45009 met by the queue pauses direct sends too`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('send-pause') } })
    await app.wechat.getToken()
    sim.failNext('send', { errcode: 45009 })
    const ids = (await app.wechat.enqueue([numbered('Q', 1), numbered('Q', 2), numbered('Q', 3)])).map((r) => r.id)
    await until('45009 met', async () => (await Promise.all(ids.map((id) => app.wechat.status(id)))).some((r) => r?.errcode === 45009))
    await sleep(300)
    const calls = sim.counters.send
    t.match(await app.wechat.send(shippedMessage()).catch((e: unknown) => e), { code: 'FST_WECHAT_API', errcode: 45009 })
    t.equal(sim.counters.send, calls, 'the direct send made no call')
    await app.wechat.resumeQueue()
    t.ok((await app.wechat.send(shippedMessage())).msgid)
    await until('every queued message sent', async () => (await statusCounts(app, ids)).sent === 3)
  })
}

test('queue: false: a 45009 pauses direct sends until the quota resets by the plugin\'s clock', async (t) => {
  // 23:59:00 in China (UTC+8)
  const sim = await startSimulator(t, { clock: new SimulatorClock(Date.UTC(2026, 2, 1, 15, 59)) })
  const app = await buildApp(t, sim, { plugin: { queue: false, clock: sim.clock } })
  await app.wechat.getToken()
  sim.failNext('send', { errcode: 45009 })
  t.match(await app.wechat.send(shippedMessage()).catch((e: unknown) => e), { errcode: 45009 })
  const calls = sim.counters.send
  t.match(await app.wechat.send(shippedMessage()).catch((e: unknown) => e), { errcode: 45009, retryAfter: 60_000 })
  t.equal(sim.counters.send, calls, 'no call while paused')
  sim.clock.advance(60_000)
  t.ok((await app.wechat.send(shippedMessage())).msgid, 'the clock passed midnight in China: sent')
})

test('memory queue: the quota reset by the plugin\'s clock ends the pause for direct sends too', async (t) => {
  const sim = await startSimulator(t, { clock: new SimulatorClock(Date.UTC(2026, 2, 1, 15, 59)) })
  const app = await buildApp(t, sim, { plugin: { clock: sim.clock } })
  await app.wechat.getToken()
  sim.failNext('send', { errcode: 45009 })
  t.match(await app.wechat.send(shippedMessage()).catch((e: unknown) => e), { errcode: 45009 })
  t.match(await app.wechat.send(shippedMessage()).catch((e: unknown) => e), { errcode: 45009, attempts: undefined })
  sim.clock.advance(61_000)
  // (the queue's clock check runs each second)
  await until('direct sends go again', async () => (await app.wechat.send(shippedMessage()).then(() => true, () => false)), 5000, 200)
  t.pass('sent after the clock\'s midnight')
})
