/**
 * A Redis outage longer than the worker's outcome-write deadline (OUTCOME_WRITE_DEADLINE_MS, 30 s),
 * beginning while WeChat calls are under way. The messages reached WeChat, but neither their 'sent'
 * records nor their jobs' completion reached Redis, so the jobs ran again once Redis was back and,
 * their records still saying 'sending', every one of them was sent a second time (an audit counted
 * 120 duplicates in a 40 s outage). The outcome is now held in memory (unwritten-outcomes.ts): the
 * run after the outage writes it instead of calling WeChat again.
 */
import { test } from 'tap'
import { buildApp, startSimulator } from './helpers/app.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { numbered, settled, sleep, until } from './queue-helpers.js'
import { OUTCOME_WRITE_DEADLINE_MS } from '../lib/delivery/job-runner.js'

test('a Redis outage longer than the outcome-write deadline, WeChat calls under way: after it, no message is sent twice', { timeout: 150_000 }, async (t) => {
  const redis = await startRedis({ persistent: true })
  t.teardown(() => redis.cleanup())
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix: uniquePrefix('long-outage') } })
  await app.wechat.getToken()

  sim.setLatency(2000)
  // single jobs, and a batch job of 6
  const singles = await Promise.all([1, 2, 3, 4].map((i) => app.wechat.enqueue(numbered('Long', i))))
  const batch = await app.wechat.enqueue([5, 6, 7, 8, 9, 10].map((i) => numbered('Long', i)))
  const ids = [...singles.flat(), ...batch].map((r) => r.id)
  await until('every message is being sent', async () => (await Promise.all(ids.map((id) => app.wechat.status(id)))).every((record) => record?.status === 'sending'), 10_000, 20)

  // Redis dies while the calls are with WeChat, and stays away past the outcome writes' deadline.
  await redis.stop()
  await sleep(OUTCOME_WRITE_DEADLINE_MS + 3000)
  t.equal(sim.accepted.filter((m) => m.touser.startsWith('oLong-')).length, 10, 'WeChat has every message, once')
  sim.setLatency(0)
  await redis.start()
  await until('the app reads from Redis again', () => app.wechat.stats().then(() => true, () => false))

  await settled(app, ids, 60_000)
  const records = await Promise.all(ids.map((id) => app.wechat.status(id)))
  t.same(records.map((record) => record?.status), ids.map(() => 'sent'), 'every record says sent')
  // (the jobs ran again: give any second sends time to land)
  await sleep(3000)
  const counts = new Map<string, number>()
  for (const m of sim.accepted) if (m.touser.startsWith('oLong-')) counts.set(m.touser, (counts.get(m.touser) ?? 0) + 1)
  t.same([...counts.values()], ids.map(() => 1), 'each message sent once')
})
