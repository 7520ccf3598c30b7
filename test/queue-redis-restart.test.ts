import { test } from 'tap'
import type { Redis } from 'ioredis'
import { buildApp, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { duplicates, identity, messageIdentity, numbered, settled, sleep, statusCounts, until } from './queue-helpers.js'

const COUNT = 300

test('Redis killed and restarted while the queue is busy (persistent server) → nothing lost, every message ends sent', async (t) => {
  const sim = await startSimulator(t, { latencyMs: 50 })
  const redis = await startRedis({ persistent: true })
  t.teardown(() => redis.cleanup())
  const keyPrefix = uniquePrefix('restart')
  const logs = captureLogs('warn')
  const app = await buildApp(t, sim, { redisUrl: redis.url, logger: logs.logger, plugin: { keyPrefix, queue: { concurrency: 8 } } })
  await app.wechat.getToken()

  const messages = Array.from({ length: COUNT }, (_, i) => numbered('S', i))
  const ids = (await Promise.all([0, 1, 2].map((b) => app.wechat.enqueue(messages.slice(b * 100, b * 100 + 100))))).flat().map((r) => r.id)
  await until('the queue is busy', () => sim.accepted.length >= 60)

  await redis.stop() // SIGKILL: only what Redis acknowledged (and fsynced) survives
  const acceptedAtStop = sim.accepted.length
  // While Redis is away, enqueue refuses at once with a coded error: nothing is taken that could be lost.
  await sleep(200)
  const refused = await app.wechat.enqueue(numbered('S', 9999)).then(() => null, (err: { code?: string }) => err)
  t.equal(refused?.code, 'FST_WECHAT_QUEUE', 'enqueue during the outage is refused')
  await sleep(1300)
  await redis.start()
  await until('the app reconnected', () => (app as unknown as { redis: Redis }).redis.status === 'ready', 10_000)
  t.comment(`${acceptedAtStop} accepted when Redis was killed; restarted after 1.5 s`)

  await settled(app, ids, 60_000)
  // And the queue takes new work again.
  const [late] = await app.wechat.enqueue(numbered('S', 1000))
  await settled(app, [late.id])
  ids.push(late.id)
  messages.push(numbered('S', 1000))
  t.same(await statusCounts(app, ids), { sent: COUNT + 1 }, "every enqueued message ends 'sent'")
  const seen = new Set(sim.accepted.map(identity))
  t.ok(messages.every((m) => seen.has(messageIdentity(m))), 'every message reached the simulator')
  const dups = duplicates(sim.accepted)
  t.comment(`duplicates at the simulator: ${dups.byIdentity}`)
  t.ok(dups.byIdentity <= 8, `at most the jobs active at the restart were sent twice (${dups.byIdentity})`)
  const stats = await app.wechat.stats()
  t.equal(stats.sent, COUNT + 1)
  t.equal(stats.pending + stats.sending + stats.failed + stats.unknown, 0)
})
