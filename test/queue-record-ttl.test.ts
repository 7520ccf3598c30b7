import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { APP_ID, buildApp, startSimulator } from './helpers/app.js'
import type { Teardown } from './helpers/app.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import type { WechatSimulator } from '../lib/testing/index.js'
import { keySpace } from '../lib/store/keys.js'
import { numbered, settled, until } from './queue-helpers.js'

/**
 * A message still on its way (pending, sending) keeps its record however long it waits: a delay
 * longer than `retention`, 45011's minute, a backoff. Before, its record expired while it waited:
 * status(id) answered null for a queued message, and the job runner wrote the record anew, so
 * stats counted it twice, once stuck in 'pending'. Once the message finishes, `retention` applies.
 */
const RETENTION = 60
const DAY_MS = 86_400_000

interface Setup { app: FastifyInstance, clock: { t: number, now (): number }, ttlOf?: (id: string) => Promise<number> }

async function setup (t: Teardown, sim: WechatSimulator, kind: 'memory' | 'bullmq'): Promise<Setup> {
  const redisUrl = await redisFor(t, kind)
  const keyPrefix = uniquePrefix('record-ttl')
  // The memory store expires records on this clock; Redis on its own (read with PTTL).
  const clock = { t: Date.now(), now () { return this.t } }
  const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix, retention: RETENTION, ...(kind === 'memory' ? { clock } : {}) } })
  if (redisUrl === undefined) return { app, clock }
  const redis = new Redis(redisUrl)
  t.teardown(() => redis.quit())
  const keys = keySpace(keyPrefix, APP_ID)
  return { app, clock, ttlOf: async (id) => await redis.pttl(keys.record(id)) / 1000 }
}

for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: a message delayed past the retention keeps its record until it is sent`, async (t) => {
    const sim = await startSimulator(t)
    const { app, clock, ttlOf } = await setup(t, sim, kind)
    const [delayed] = await app.wechat.enqueue(numbered('TD', 1), { delay: 10 * DAY_MS })
    const id = (delayed as { id: string }).id
    if (ttlOf) {
      t.ok(await ttlOf(id) > 10 * 86_400 + RETENTION, `record TTL ${await ttlOf(id)} s covers the delay and then the retention`)
    } else {
      clock.t += 10 * DAY_MS - 1000
      t.equal((await app.wechat.status(id))?.status, 'pending', 'still there, pending, just before it is due')
    }
    const stats = await app.wechat.stats()
    t.same([stats.total, stats.pending], [1, 1])
  })

  test(`${kind} queue: a message held back by 45011 keeps its record past the retention; sent, it keeps the retention`, async (t) => {
    const sim = await startSimulator(t)
    const { app, clock, ttlOf } = await setup(t, sim, kind)
    await app.wechat.getToken()
    sim.failNext('send', { errcode: 45011 })
    const [held] = await app.wechat.enqueue(numbered('TR', 1))
    const id = (held as { id: string }).id
    await until('the 45011 answer recorded', async () => (await app.wechat.status(id))?.errcode === 45011)
    t.equal((await app.wechat.status(id))?.status, 'pending')
    if (ttlOf) {
      t.ok(await ttlOf(id) > 60 + RETENTION, `record TTL ${await ttlOf(id)} s covers the minute's wait and then the retention`)
    } else {
      clock.t += (RETENTION + 30) * 1000
      t.equal((await app.wechat.status(id))?.status, 'pending', 'still there, pending, past the retention')
    }
    t.same(await statsOf(app), { total: 1, pending: 1, sent: 0 })

    // A message that finishes keeps `retention` from then on.
    const [sent] = await app.wechat.enqueue(numbered('TR', 2))
    const sentId = (sent as { id: string }).id
    await settled(app, [sentId])
    if (ttlOf) {
      const ttl = await ttlOf(sentId)
      t.ok(ttl > 0 && ttl <= RETENTION, `a sent message's record TTL is the retention (${ttl} s)`)
    } else {
      clock.t += (RETENTION + 1) * 1000
      t.equal(await app.wechat.status(sentId), null, 'a sent message\'s record expires after the retention')
    }
  })
}

async function statsOf (app: FastifyInstance): Promise<{ total: number, pending: number, sent: number }> {
  const { total, pending, sent } = await app.wechat.stats()
  return { total, pending, sent }
}

// setTimeout takes at most 2^31 - 1 ms: the in-process queue handed it a 25-day delay, Node cut it to
// 1 ms (TimeoutOverflowWarning) and the message went out at once. Failed before (sent within 0.5 s).
test('memory queue: a delay longer than 24.8 days (setTimeout\'s limit) is kept, not cut to nothing', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, {})
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning.name) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const [queued] = await app.wechat.enqueue(numbered('D', 1), { delay: 25 * 24 * 3_600_000 })
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(sim.counters.send, 0, 'not sent')
  t.equal((await app.wechat.status(queued?.id as string))?.status, 'pending')
  t.notOk(warnings.includes('TimeoutOverflowWarning'), 'no timer overflow')
})
