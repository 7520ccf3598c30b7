import { test } from 'tap'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { WechatSimulator } from '../lib/testing/index.js'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import { slowRepliesProxy } from './helpers/redis-proxy.js'
import { numbered, sleep, statusCounts, until } from './queue-helpers.js'
import { SimulatorClock } from '../lib/testing/index.js'

/** Two instances on one Redis; the first one's direct send has just met 45009 (the fleet's pause begins). */
async function pausedByFirst (t: Test, name: string): Promise<{ sim: WechatSimulator, first: FastifyInstance, second: FastifyInstance }> {
  const sim = await startSimulator(t)
  const redisUrl = await redisFor(t, 'bullmq')
  const keyPrefix = uniquePrefix(name)
  const first = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix } })
  const second = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix } })
  await first.wechat.getToken()
  sim.failNext('send', { errcode: 45009 })
  t.match(await first.wechat.send(shippedMessage()).catch((e: unknown) => e), { errcode: 45009 })
  return { sim, first, second }
}

// The fleet's 45009 pause began in two steps: read the fleet's resume mark, then write the pause key
// and BullMQ's rate limit. A resumeQueue() on another instance between the two found no pause to end,
// and the pause written after it held every worker of the fleet until the quota's reset, the resume
// lost (left open by an earlier session). One script now. Failed before (nothing sent after the resume).
test('bullmq: a resumeQueue() on another instance while this one is beginning a 45009 pause is not undone by it', async (t) => {
  const sim = await startSimulator(t)
  const redisUrl = await redisFor(t, 'bullmq') as string
  const proxy = await slowRepliesProxy(t, redisUrl)
  const keyPrefix = uniquePrefix('pause-race')
  const slow = await buildApp(t, sim, { redisUrl: proxy.url, plugin: { keyPrefix } })
  const other = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix } })
  await slow.wechat.getToken()

  proxy.delayMs = 600
  sim.failNext('send', { errcode: 45009 })
  // the direct send's 45009 begins the fleet's pause; its Redis replies arrive 600 ms late
  t.match(await slow.wechat.send(shippedMessage()).catch((e: unknown) => e), { errcode: 45009 })
  await sleep(150)
  // the operator cleared the quota and resumes from another instance meanwhile
  await other.wechat.resumeQueue()
  // (each of the first instance's commands waits for the reply to the one before: 3 × 600 ms)
  await sleep(2000)
  proxy.delayMs = 0

  const ids = (await other.wechat.enqueue([numbered('R', 1), numbered('R', 2), numbered('R', 3)])).map((r) => r.id)
  await until('the messages queued after the resume are sent', async () => (await statusCounts(other, ids)).sent === 3, 12_000)
  t.same(await statusCounts(other, ids), { sent: 3 })
  t.ok((await slow.wechat.send(shippedMessage())).msgid, 'and the first instance sends directly again')
})

// The fleet's pause was carried by BullMQ's rate limit, which stops only workers that have a `limiter`
// (moveToActive reads the limiter key only then): with the default options the other instances'
// workers went on fetching and sending (4 of 30 here) until each met a 45009 of its own. Failed before.
test('bullmq: a direct send\'s 45009 on one instance stops the other instances\' workers too; resumeQueue() on another ends it for all', async (t) => {
  const { sim, first, second } = await pausedByFirst(t, 'pause-fleet')
  await sleep(300)
  const calls = sim.counters.send
  const ids = [
    ...(await second.wechat.enqueue(Array.from({ length: 20 }, (_, i) => numbered('B', i)))),
    ...(await Promise.all(Array.from({ length: 10 }, (_, i) => second.wechat.enqueue(numbered('K', i), { idempotencyKey: `k-${i}` })))).flat()
  ].map((r) => r.id)
  await sleep(2000)
  t.equal(sim.counters.send, calls, 'no call from either instance\'s worker')
  t.same(await statusCounts(second, ids), { pending: 30 })
  await second.wechat.resumeQueue()
  await until('all sent after the resume', async () => (await statusCounts(second, ids)).sent === 30, 20_000)
  t.ok((await first.wechat.send(shippedMessage())).msgid, 'the first instance\'s direct sends go again (it read the fleet\'s pause key)')
})

// A fleet audit: resumeQueue() on one instance cleared only its own token hold. Another instance that
// held the token endpoint's 45009 answered its next queued job with that held refusal, taken as a 45009
// met now, after the resume, and paused the whole fleet again until the reset. Failed before (the
// messages stayed pending under a new pause).
test('bullmq: resumeQueue() on one instance ends another instance\'s token hold for 45009; its held refusal does not pause the fleet again', async (t) => {
  const sim = await startSimulator(t)
  const redisUrl = await redisFor(t, 'bullmq')
  const keyPrefix = uniquePrefix('pause-token')
  const first = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix, templates: false } })
  const second = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix, templates: false } })
  await first.wechat.getToken()
  sim.invalidateTokens()
  sim.failNext('stable_token', { errcode: 45009 })
  t.match(await second.wechat.send(shippedMessage()).catch((e: unknown) => e), { code: 'FST_WECHAT_TOKEN', errcode: 45009 })
  t.match(await second.wechat.send(shippedMessage()).catch((e: unknown) => e), { code: 'FST_WECHAT_TOKEN', errcode: 45009, held: true }, 'held on the second instance')
  // the operator clears the quotas and resumes from the first instance, which then goes away
  await sleep(20)
  await first.wechat.resumeQueue()
  await first.close()
  const ids = (await second.wechat.enqueue([numbered('T', 1), numbered('T', 2)])).map((r) => r.id)
  await until('the second instance sends them', async () => (await statusCounts(second, ids)).sent === 2, 15_000)
  t.ok((await second.wechat.send(shippedMessage())).msgid, 'and its direct sends go out again')
})

// A fleet audit: with the plugin's own clock, only the instance that began a 45009 pause watched that
// clock for the reset; one that took the pause up from Redis waited out the key's real-time expiry
// (hours) once the first had gone. Failed before (nothing sent after the clock's midnight).
test('bullmq: an instance that took up the fleet\'s pause ends it at the reset by the plugin\'s clock', async (t) => {
  // 18:00 in China (UTC+8)
  const sim = await startSimulator(t, { clock: new SimulatorClock(Date.UTC(2026, 2, 1, 10, 0)) })
  const redisUrl = await redisFor(t, 'bullmq')
  const keyPrefix = uniquePrefix('pause-clock')
  const first = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix, clock: sim.clock } })
  await first.wechat.getToken()
  sim.failNext('send', { errcode: 45009 })
  t.match(await first.wechat.send(shippedMessage()).catch((e: unknown) => e), { errcode: 45009 })
  await sleep(300)
  await first.close()
  const second = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix, clock: sim.clock } })
  const ids = (await second.wechat.enqueue([numbered('C', 1), numbered('C', 2)])).map((r) => r.id)
  await sleep(1500)
  t.same(await statusCounts(second, ids), { pending: 2 }, 'the pause taken up from Redis holds')
  sim.clock.advance(6 * 3_600_000 + 60_000)
  await until('sent after the clock\'s midnight', async () => (await statusCounts(second, ids)).sent === 2, 15_000)
  t.ok((await second.wechat.send(shippedMessage())).msgid, 'direct sends too')
})

// Another instance's direct sends learnt of the fleet's pause only from their own first 45009 (or their
// worker's read of the pause key, which runs only when it fetches a job). Failed before (the second
// instance's send reached WeChat).
test('bullmq: another instance\'s direct sends stop within a second of a 45009 met by one instance', async (t) => {
  const { sim, second } = await pausedByFirst(t, 'pause-direct')
  await sleep(1200)
  const calls = sim.counters.send
  t.match(await second.wechat.send(shippedMessage()).catch((e: unknown) => e), { code: 'FST_WECHAT_API', errcode: 45009, message: /paused/ })
  t.equal(sim.counters.send, calls, 'without a call')
  await second.wechat.resumeQueue()
  t.ok((await second.wechat.send(shippedMessage())).msgid, 'after the resume it sends')
})

// Audit: on a Redis Cluster whose slot had no master, every direct send waited 1-4 s: the read of the
// fleet's pause key (at most once a second) had no time limit. A direct send now waits for it at most
// SEND_READ_WAIT_MS (100 ms); the read goes on for the next one. Failed before (the send took the full delay).
test('bullmq: a direct send does not wait for a slow Redis to answer the read of the fleet\'s pause key', async (t) => {
  const sim = await startSimulator(t)
  const proxy = await slowRepliesProxy(t, await redisFor(t, 'bullmq') as string)
  const app = await buildApp(t, sim, { redisUrl: proxy.url, plugin: { keyPrefix: uniquePrefix('pause-read') } })
  await app.wechat.send(shippedMessage())
  await sleep(1100) // the pause key is due for its next read
  proxy.delayMs = 3000
  const started = Date.now()
  t.ok((await app.wechat.send(shippedMessage())).msgid, 'sent')
  const took = Date.now() - started
  proxy.delayMs = 0
  t.ok(took < 1500, `the send did not wait out Redis (${took} ms)`)
})
