import { test } from 'tap'
import { buildApp, startSimulator } from './helpers/app.js'
import { exitCode, forkFixture, nextMessage } from './helpers/fork.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { duplicates, identity, inspectQueue, numbered, messageIdentity, settled, statusCounts, until } from './queue-helpers.js'

const COUNT = 200

test('an instance SIGKILLed with active jobs → a new instance recovers the stalled jobs and every message ends sent', async (t) => {
  const sim = await startSimulator(t, { latencyMs: 300 })
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const keyPrefix = uniquePrefix('crash')

  const child = forkFixture('queue-worker.ts', {
    REDIS_URL: redis.url,
    SIM_URL: sim.url,
    APP_ID: sim.appId,
    APP_SECRET: sim.appSecret,
    KEY_PREFIX: keyPrefix,
    COUNT: String(COUNT),
    TAG: 'K',
    CONCURRENCY: '8'
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const { ids } = await nextMessage<{ ids: string[] }>(child, 'enqueued', 60_000)
  t.equal(ids.length, COUNT)

  await until('the child has sent a few', () => sim.accepted.length >= 40, 30_000)
  child.kill('SIGKILL')
  await exitCode(child, 5000)
  const acceptedAtKill = sim.accepted.length
  const inFlightAtKill = sim.counters.send - sim.requests.filter((r) => r.endpoint === 'send').length

  // What the dead instance left in BullMQ's active list: the jobs that will stall.
  const queue = inspectQueue(redis.url, keyPrefix, sim.appId)
  t.teardown(() => queue.close())
  const activeAtKill = await queue.getActiveCount()
  t.comment(`at the kill: ${acceptedAtKill} accepted, ${inFlightAtKill} calls in flight at the simulator, ${activeAtKill} jobs active`)
  t.ok(activeAtKill > 0 && activeAtKill <= 8, `jobs were active at the kill (${activeAtKill}, concurrency 8)`)

  const started = Date.now()
  const app = await buildApp(t, sim, { redisUrl: redis.url, plugin: { keyPrefix, queue: { concurrency: 8 } } })
  await settled(app, ids, 60_000)
  t.comment(`every message settled ${Date.now() - started} ms after the new instance started (lockDuration 15 s)`)

  t.same(await statusCounts(app, ids), { sent: COUNT }, "every message ends 'sent'")
  const seen = new Set(sim.accepted.map(identity))
  const expected = Array.from({ length: COUNT }, (_, i) => messageIdentity(numbered('K', i)))
  t.ok(expected.every((id) => seen.has(id)), 'every message reached the simulator')
  const dups = duplicates(sim.accepted)
  t.comment(`duplicates at the simulator (same touser+character_string1): ${dups.byIdentity}, jobs active at the kill: ${activeAtKill}`)
  t.equal(dups.byMsgid, 0)
  // A message is sent twice only if its call was under way at the kill (or answered, its outcome not
  // yet written): at most the concurrency, whether the active jobs are single or batches.
  t.ok(dups.byIdentity <= 8, `duplicates (${dups.byIdentity}) ≤ calls that could be under way at the kill (concurrency 8)`)
  t.equal(sim.accepted.length, COUNT + dups.byIdentity)
  t.equal(await queue.getActiveCount(), 0)
  t.equal(await queue.getWaitingCount(), 0)
})
