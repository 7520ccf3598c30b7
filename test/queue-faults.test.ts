import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { buildApp, startSimulator } from './helpers/app.js'
import type { Teardown } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { redisFor, startRedis, uniquePrefix } from './helpers/redis-server.js'
import type { WechatSimulator, SimFault } from '../lib/testing/index.js'
import { DEMO_TEMPLATE_IDS, SimulatorClock } from '../lib/testing/index.js'
import { duplicates, inspectQueue, numbered, settled, sleep, statusCounts, until } from './queue-helpers.js'

type Kind = 'memory' | 'bullmq'

interface Setup { app: FastifyInstance, redisUrl?: string, keyPrefix: string }

async function setup (t: Teardown, sim: WechatSimulator, kind: Kind, options: { logger?: Record<string, unknown>, plugin?: Record<string, unknown> } = {}): Promise<Setup> {
  const redisUrl = await redisFor(t, kind)
  const keyPrefix = uniquePrefix('faults')
  const app = await buildApp(t, sim, { redisUrl, logger: options.logger, plugin: { keyPrefix, ...options.plugin } })
  return { app, redisUrl, keyPrefix }
}

/** When a job waiting in BullMQ's delayed set is due (ms): its score holds the time shifted by 12 bits. */
async function delayedUntil (t: Teardown, redisUrl: string, keyPrefix: string, appId: string, id: string): Promise<number> {
  const client = new Redis(redisUrl)
  t.teardown(() => client.quit())
  return Math.floor(Number(await client.zscore(`${keyPrefix}{${appId}}:subscribe-send:delayed`, id)) / 0x1000)
}

const isFault = (r: { endpoint: string, httpStatus: number, errcode?: number }): boolean => r.endpoint === 'send' && (r.httpStatus !== 200 || r.errcode !== 0)

for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: transient faults on 20% of send calls (-1, HTTP 502, dropped connection) → every message ends sent`, async (t) => {
    const sim = await startSimulator(t)
    const { app } = await setup(t, sim, kind)
    await app.wechat.getToken()
    const COUNT = 300
    // One fault in five calls, spread through the calls: an empty fault is a normal answer.
    const kinds: SimFault[] = [{ errcode: -1 }, { httpStatus: 502 }, { drop: true }]
    for (let i = 0; i < 400; i++) sim.failNext('send', i % 5 === 2 ? kinds[(i / 5 | 0) % 3] : {})

    const results = (await Promise.all([0, 1, 2].map((b) => app.wechat.enqueue(Array.from({ length: COUNT / 3 }, (_, i) => numbered(`F${kind[0]}`, b * 1000 + i)))))).flat()
    await settled(app, results.map((r) => r.id), 60_000)

    t.same(await statusCounts(app, results.map((r) => r.id)), { sent: COUNT }, 'every message sent')
    const faults = sim.requests.filter(isFault)
    t.ok(faults.length >= 70, `${faults.length} faulted calls`)
    t.ok(faults.some((r) => r.errcode === -1) && faults.some((r) => r.httpStatus === 502) && faults.some((r) => r.httpStatus === 0), 'all three kinds of fault happened')
    t.equal(sim.counters.send, COUNT + faults.length, 'one successful call per message, plus the faulted ones')
    t.equal(sim.accepted.length, COUNT)
    t.same(duplicates(sim.accepted), { byIdentity: 0, byMsgid: 0 })
    const stats = await app.wechat.stats()
    t.equal(stats.sent, COUNT)
    t.equal(stats.failed + stats.unknown + stats.pending + stats.sending, 0)
    const records = await Promise.all(results.map((r) => app.wechat.status(r.id)))
    t.ok(records.some((r) => (r?.attempts ?? 0) > 1), 'retried messages count their attempts')
    t.ok(records.every((r) => r?.errcode === undefined && r?.errmsg === undefined), 'a later success clears the transient errcode')
  })

  test(`${kind} queue: permanent errors end failed at once, one call each`, async (t) => {
    const sim = await startSimulator(t)
    const { app } = await setup(t, sim, kind)
    await app.wechat.getToken()
    await app.wechat.enqueue(numbered('P', 0)) // the app now knows the account's templates, if it looks them up
    await until('warm-up sent', () => sim.accepted.length === 1)

    // Refused by the simulator's own checks (the local validation lets these through). The template
    // is deleted at "WeChat" after the app got to know it (deleted in the MP console).
    const badOpenid = { ...numbered('P', 1), toUser: 'not.an.openid' }
    sim.removeTemplate(DEMO_TEMPLATE_IDS.meetingReminder)
    const noTemplate = { toUser: 'oP-user-00002', templateId: DEMO_TEMPLATE_IDS.meetingReminder, data: { thing1: 'Room 1', date2: '2026年3月1日' } }
    const genuine = await app.wechat.enqueue([badOpenid, noTemplate])
    await settled(app, genuine.map((r) => r.id))
    const genuineRecords = await Promise.all(genuine.map((r) => app.wechat.status(r.id)))
    t.same(genuineRecords.map((r) => [r?.status, r?.errcode, r?.attempts]), [['failed', 40003, 1], ['failed', 40037, 1]])
    t.equal(sim.counters.send, 3, 'one call each')

    // 47003 (a value WeChat refuses) is caught by the local validation first: forced with failNext,
    // with 40037, in a batch with concurrency.
    sim.failNext('send', { errcode: 40037 }, 5)
    sim.failNext('send', { errcode: 47003 }, 5)
    const faked = await app.wechat.enqueue(Array.from({ length: 10 }, (_, i) => numbered('Q', i)))
    await settled(app, faked.map((r) => r.id))
    const records = await Promise.all(faked.map((r) => app.wechat.status(r.id)))
    t.ok(records.every((r) => r?.status === 'failed' && r.attempts === 1), 'failed after one attempt')
    t.equal(records.filter((r) => r?.errcode === 40037).length, 5)
    t.equal(records.filter((r) => r?.errcode === 47003).length, 5)
    await sleep(500)
    t.equal(sim.counters.send, 13, 'never retried')
    t.equal(sim.accepted.length, 1)
    const stats = await app.wechat.stats()
    t.equal(stats.failed, 12)
    t.same(stats.errcodes, { 40003: 1, 40037: 6, 47003: 5 })
  })

  test(`${kind} queue: 45011 → back to pending with errcode 45011, not retried before 60 s`, async (t) => {
    const sim = await startSimulator(t)
    const { app, redisUrl, keyPrefix } = await setup(t, sim, kind)
    await app.wechat.getToken()
    sim.failNext('send', { errcode: 45011 })
    const before = Date.now()
    const [{ id }] = await app.wechat.enqueue(numbered('R', 1))
    await until('45011 recorded', async () => (await app.wechat.status(id))?.errcode === 45011)
    const record = await app.wechat.status(id)
    t.equal(record?.status, 'pending')
    t.equal(sim.counters.send, 1)

    await sleep(1000)
    t.equal(sim.counters.send, 1, 'no second call within a second')
    t.equal((await app.wechat.status(id))?.status, 'pending')

    if (kind === 'bullmq') {
      // The job waits in BullMQ's delayed set for at least 60 s; promoting it proves it is retried.
      const queue = inspectQueue(redisUrl as string, keyPrefix, sim.appId)
      t.teardown(() => queue.close())
      t.equal(await queue.getJobState(id), 'delayed')
      const dueAt = await delayedUntil(t, redisUrl as string, keyPrefix, sim.appId, id)
      t.ok(dueAt - before >= 59_000, `due ${dueAt - before} ms after the first call`)
      const job = await queue.getJob(id)
      await job?.promote()
      await settled(app, [id])
      const sent = await app.wechat.status(id)
      t.equal(sent?.status, 'sent')
      t.equal(sent?.errcode, undefined, 'errcode cleared on success')
      t.equal(sim.accepted.length, 1)
    }
  })

  // Found by an audit against an independent WeChat fake: every attempt was spent at backoff speed, so
  // a message queued while the server's IP was off the whitelist ended failed within seconds.
  test(`${kind} queue: the token endpoint refusing (40164) → pending with its errcode, no attempt spent, sent once fixed`, async (t) => {
    const sim = await startSimulator(t)
    const { app, redisUrl, keyPrefix } = await setup(t, sim, kind)
    sim.failNext('stable_token', { errcode: 40164, errmsg: 'invalid ip 203.0.113.9 ipv6 ::ffff:203.0.113.9, not in whitelist' }, 1000)
    const before = Date.now()
    const [{ id }] = await app.wechat.enqueue(numbered('T', 1))
    await until('40164 recorded', async () => (await app.wechat.status(id))?.errcode === 40164)
    await sleep(1500)
    const record = await app.wechat.status(id)
    t.match(record, { status: 'pending', errcode: 40164, attempts: 0 }, 'waiting, no attempt spent')
    t.match(record?.errmsg, /203\.0\.113\.9/, 'the advice names the IP')
    t.equal(sim.counters.send, 0, 'nothing sent')
    t.ok(sim.counters.stable_token <= 3, `the token endpoint was not hammered (${sim.counters.stable_token} calls)`)

    if (kind === 'bullmq') {
      const queue = inspectQueue(redisUrl as string, keyPrefix, sim.appId)
      t.teardown(() => queue.close())
      t.equal(await queue.getJobState(id), 'delayed')
      t.ok(await delayedUntil(t, redisUrl as string, keyPrefix, sim.appId, id) - before >= 59_000, 'back in a minute at the soonest')
      // The IP is whitelisted: the next run gets a token and sends.
      sim.reset()
      await (await queue.getJob(id))?.promote()
      await settled(app, [id])
      t.match(await app.wechat.status(id), { status: 'sent', attempts: 1 }, 'sent on its first attempt')
      t.equal(sim.accepted.length, 1)
    }
  })

  test(`${kind} queue: 45009 → the queue stops sending`, async (t) => {
    const sim = await startSimulator(t, { latencyMs: 100 })
    const logs = captureLogs('warn')
    const { app } = await setup(t, sim, kind, { logger: logs.logger })
    await app.wechat.getToken()
    sim.failNext('send', { errcode: 45009 })
    const results = await app.wechat.enqueue(Array.from({ length: 40 }, (_, i) => numbered('Z', i)))
    const ids = results.map((r) => r.id)
    let quotaId: string | undefined
    await until('45009 recorded', async () => {
      const records = await Promise.all(ids.map((id) => app.wechat.status(id)))
      quotaId = records.find((r) => r?.errcode === 45009)?.id
      return quotaId !== undefined
    })
    await sleep(300) // calls already under way when 45009 came back may finish
    const calls = sim.counters.send
    t.ok(calls <= 16, `${calls} calls before the queue stopped (concurrency 8)`)
    await sleep(2000)
    t.equal(sim.counters.send, calls, 'no further call for 2 s')
    const counts = await statusCounts(app, ids)
    t.equal(counts.pending, 40 - (counts.sent ?? 0), 'the rest stay pending')
    t.equal((await app.wechat.status(quotaId as string))?.status, 'pending', 'the 45009 message is kept for later')
    t.ok(logs.parsed().some((line) => /quota used up \(45009\)/.test(String(line.msg))), 'logged')

    const closing = Date.now()
    await app.close()
    t.ok(Date.now() - closing < 5000, `close is prompt while paused (${Date.now() - closing} ms)`)
  })

  // An audit: with the simulator's clock shared, moving it past midnight (China) did not end a 45009
  // pause: the queues waited in real time. Failed before (nothing sent after the clock's midnight);
  // then on BullMQ, 1 run in 4: a parked job the resume promoted was fetched while the pause still
  // held and parked again until the old pause's end (the resume now ends the pause first).
  test(`${kind} queue: a 45009 pause ends when the plugin's clock (the simulator's) passes midnight in China`, async (t) => {
    // 23:59:00 in China (UTC+8)
    const sim = await startSimulator(t, { sendQuota: 5, clock: new SimulatorClock(Date.UTC(2026, 2, 1, 15, 59)) })
    const { app } = await setup(t, sim, kind, { plugin: { clock: sim.clock } })
    await app.wechat.getToken()
    const ids = (await app.wechat.enqueue(Array.from({ length: 8 }, (_, i) => numbered('M', i)))).map((r) => r.id)
    await until('45009 met', async () => (await Promise.all(ids.map((id) => app.wechat.status(id)))).some((r) => r?.errcode === 45009))
    await sleep(1000)
    t.equal(sim.accepted.length, 5, 'the day\'s 5, then the queue stopped')
    sim.clock.advance(61_000)
    // (the new day's 5 cover the 3 left)
    await until('every message sent after the clock\'s midnight', async () => (await statusCounts(app, ids)).sent === 8, 15_000)
    const messages = sim.accepted.map((m) => m.data.character_string1?.value)
    t.equal(new Set(messages).size, 8, 'each once')
  })

  // A 45009 parked the queue until the next midnight, and nothing could end the pause when the
  // quota was reset with clear_quota (10 a month, for exactly this). resumeQueue() did not exist.
  test(`${kind} queue: the daily quota used up (sendQuota), reset with clear_quota/v2, resumeQueue() → every message sent`, async (t) => {
    const sim = await startSimulator(t, { sendQuota: 15 })
    const { app } = await setup(t, sim, kind)
    await app.wechat.getToken()
    t.same(await app.wechat.resumeQueue(), { released: 0 }, 'nothing to resume before a pause')
    const batch = await app.wechat.enqueue(Array.from({ length: 20 }, (_, i) => numbered('Q', i)))
    const singles = await Promise.all(Array.from({ length: 10 }, (_, i) => app.wechat.enqueue(numbered('R', i), { idempotencyKey: `r-${i}` })))
    const ids = [...batch, ...singles.flat()].map((r) => r.id)
    await until('45009 met', async () => (await Promise.all(ids.map((id) => app.wechat.status(id)))).some((r) => r?.errcode === 45009))
    await sleep(1500)
    t.equal(sim.accepted.length, 15, 'the day\'s 15, then the queue stopped')
    const stopped = sim.counters.send
    await sleep(1000)
    t.equal(sim.counters.send, stopped, 'no call while paused')

    const reset = await fetch(`${sim.url}/cgi-bin/clear_quota/v2`, { method: 'POST', body: JSON.stringify({ appid: sim.appId, appsecret: sim.appSecret }) })
    t.match(await reset.json(), { errcode: 0 }, 'the quota is reset: 15 more today')
    const { released } = await app.wechat.resumeQueue()
    t.ok(released >= 1, `released ${released}`)
    // A 45009 answering a call made before the reset, handled after the resume, pauses the queue again
    // (README): a clean-clone CI run met it here once; a second resumeQueue() releases the rest.
    const allSent = async (): Promise<boolean> => (await statusCounts(app, ids)).sent === 30
    await until('every message sent', allSent, 20_000).catch(async () => {
      t.comment(`paused again after the resume (${(await statusCounts(app, ids)).sent} of 30 sent): resumed once more`)
      await app.wechat.resumeQueue()
    })
    await until('every message sent', allSent, 30_000)
    const messages = sim.accepted.map((m) => m.data.character_string1?.value)
    t.equal(new Set(messages).size, messages.length, 'no message sent twice')
  })
}

test('an empty failNext fault is a normal answer (the 20% test relies on it)', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  sim.failNext('send', {}, 3)
  const results = await app.wechat.enqueue([numbered('E', 1), numbered('E', 2), numbered('E', 3)])
  await settled(app, results.map((r) => r.id))
  t.equal(sim.accepted.length, 3)
  t.equal(sim.pendingFaults('send'), 0)
  t.equal(DEMO_TEMPLATE_IDS.orderShipped, sim.accepted[0].template_id)
})

// A second instance's jobs fetched together while it was still paused read the fleet's pause key
// once for all: the first checked, the others went by this instance's stale pause and were parked
// again until midnight (concurrency - 1 of them, 7 here). Failed before (13 of 18 sent, 5 re-parked).
test('bullmq: resumeQueue() on one instance ends the pause on every instance: every message is sent', async (t) => {
  const sim = await startSimulator(t, { sendQuota: 10 })
  const redisUrl = await redisFor(t, 'bullmq')
  const keyPrefix = uniquePrefix('resume-fleet')
  const first = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix } })
  const second = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix } })
  await first.wechat.getToken()
  const ids = [
    ...(await first.wechat.enqueue(Array.from({ length: 9 }, (_, i) => numbered('F', i)))),
    ...(await second.wechat.enqueue(Array.from({ length: 9 }, (_, i) => numbered('G', i))))
  ].map((r) => r.id)
  await until('45009 met', async () => (await Promise.all(ids.map((id) => first.wechat.status(id)))).some((r) => r?.errcode === 45009))
  await sleep(1500)
  t.equal(sim.accepted.length, 10, 'the day\'s 10, then both stopped')
  await fetch(`${sim.url}/cgi-bin/clear_quota/v2`, { method: 'POST', body: JSON.stringify({ appid: sim.appId, appsecret: sim.appSecret }) })
  await second.wechat.resumeQueue()
  // the first instance alone from here: its own pause (it may have met the 45009 itself) must be over too
  await second.close()
  // A 45009 answering a call made before the reset, handled after the resume, pauses the queue again
  // (README): on a loaded machine that happens here, and a second resumeQueue() releases the rest.
  const allSent = async (): Promise<boolean> => (await statusCounts(first, ids)).sent === 18
  await until('all 18 sent', allSent, 20_000).catch(async () => { await first.wechat.resumeQueue() })
  // (60 s: a job the closing instance still held comes back as stalled after its lock, 15 s, and a check, 5 s)
  await until('all 18 sent', allSent, 60_000)
  t.equal(sim.accepted.length, 18, 'every message, by the instance that did not resume')
})

test('resumeQueue() with the queue off: FST_WECHAT_QUEUE', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { queue: false } })
  await t.rejects(app.wechat.resumeQueue(), { code: 'FST_WECHAT_QUEUE', statusCode: 503, message: /queue is off/ })
})

// resumeQueue() counted only the parked delayed jobs: with BullMQ the backlog still in the wait list
// (the rate limit stopped the workers from fetching it) was left out (2 of 195), and with Redis down it
// rejected with ioredis' own error and forgot this instance's pause. Failed before.
for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: resumeQueue() counts every job waiting for the reset`, async (t) => {
    const sim = await startSimulator(t, { sendQuota: 5 })
    const { app } = await setup(t, sim, kind)
    t.same(await app.wechat.resumeQueue(), { released: 0 }, 'right after ready(): nothing paused (it waited for its connection)')
    await app.wechat.getToken()
    // keyed, so one job each (never batched)
    const ids = (await Promise.all(Array.from({ length: 40 }, (_, i) => app.wechat.enqueue(numbered('W', i), { idempotencyKey: `w-${i}` })))).flat().map((r) => r.id)
    await until('45009 met', async () => (await Promise.all(ids.map((id) => app.wechat.status(id)))).some((r) => r?.errcode === 45009))
    await sleep(1500)
    t.equal(sim.accepted.length, 5)
    await fetch(`${sim.url}/cgi-bin/clear_quota/v2`, { method: 'POST', body: JSON.stringify({ appid: sim.appId, appsecret: sim.appSecret }) })
    const [first, concurrent] = await Promise.all([app.wechat.resumeQueue(), app.wechat.resumeQueue()])
    // (BullMQ: jobs; under load a few may be active or in a backoff, not in the wait list)
    if (kind === 'memory') t.same(first, { released: 35 }, 'the 35 unsent, each counted once')
    else t.ok(first.released >= 20 && first.released <= 35, `about the 35 unsent, none counted twice (${first.released})`)
    t.ok(concurrent.released === first.released || concurrent.released === 0, `a concurrent call shares the run or finds nothing left (${concurrent.released})`)
    t.same(await app.wechat.resumeQueue(), { released: 0 }, 'a later call: nothing paused any more')
  })

  // A 45009 answering a call made before resumeQueue() (the quota was reset meanwhile) paused the queue
  // again until the next reset: a clean-clone CI run met it (a later resumeQueue() released 1). That
  // 45009 is the old day's: the message is tried again at once. Failed before (both queues).
  test(`${kind} queue: a 45009 answering a call made before resumeQueue() does not pause the queue again`, async (t) => {
    const sim = await startSimulator(t)
    const { app } = await setup(t, sim, kind)
    await app.wechat.getToken()
    // two calls leave together: one meets 45009 after 1 s (the pause), the other's 45009 comes 1.5 s
    // later. (Both are answered late so both have left before the pause: with the first answered at
    // once, a loaded CI machine picked the second job up after the pause and the resume, and its 45009
    // was then rightly a new one.)
    sim.failNext('send', { errcode: 45009, delayMs: 1000 })
    sim.failNext('send', { errcode: 45009, delayMs: 2500 })
    const ids = (await Promise.all([0, 1].map((i) => app.wechat.enqueue(numbered('Z', i), { idempotencyKey: `z-${i}` })))).flat().map((r) => r.id)
    await until('both calls reached WeChat', async () => sim.counters.send >= 2)
    await until('the first 45009 paused the queue', async () => (await Promise.all(ids.map((id) => app.wechat.status(id)))).some((r) => r?.errcode === 45009))
    await app.wechat.resumeQueue()
    await until('both messages sent after the resume', async () => (await Promise.all(ids.map((id) => app.wechat.status(id)))).every((r) => r?.status === 'sent'), 15_000)
    t.equal(sim.accepted.length, 2)
    t.same(await app.wechat.resumeQueue(), { released: 0 }, 'nothing paused again')
  })

  // The same when the resume comes before any pause began (made as soon as a record showed its 45009,
  // or while the call was under way): it returned early without its mark, and the 45009 then paused the
  // queue until midnight. Seen as a CI flake of the test above (its resume could beat the pause).
  test(`${kind} queue: a resumeQueue() made while the call that meets 45009 is under way keeps the queue going`, async (t) => {
    const sim = await startSimulator(t)
    const { app } = await setup(t, sim, kind)
    await app.wechat.getToken()
    sim.failNext('send', { errcode: 45009, delayMs: 1000 })
    const [queued] = await app.wechat.enqueue(numbered('Y', 1))
    await until('the call reached WeChat', async () => sim.counters.send >= 1)
    t.same(await app.wechat.resumeQueue(), { released: 0 }, 'nothing was paused yet')
    await until('sent after its old-day 45009', async () => (await app.wechat.status(queued?.id as string))?.status === 'sent', 15_000)
    t.equal(sim.accepted.length, 1)
  })
}

test('bullmq: resumeQueue() with Redis down is FST_WECHAT_QUEUE, and the pause holds until a call succeeds', async (t) => {
  const sim = await startSimulator(t, { sendQuota: 2 })
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await buildApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix: uniquePrefix('resume-down') } })
  await app.wechat.getToken()
  const ids = (await app.wechat.enqueue(Array.from({ length: 10 }, (_, i) => numbered('D', i)))).map((r) => r.id)
  await until('45009 met', async () => (await Promise.all(ids.map((id) => app.wechat.status(id)))).some((r) => r?.errcode === 45009))
  await redis.stop()
  await t.rejects(app.wechat.resumeQueue(), { code: 'FST_WECHAT_QUEUE', statusCode: 503, message: /could not resume the queue/ })
  await redis.start()
  // (the restarted test server kept nothing: no fleet pause left, but this instance's own pause holds until a resume)
  // (the queue's own connection comes back on its own schedule: the call is repeated until it answers)
  await until('a resume succeeds once Redis answers', async () => { try { await app.wechat.resumeQueue(); return true } catch { return false } }, 30_000, 500)
  t.pass('resumed')
})
