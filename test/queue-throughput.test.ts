import { test } from 'tap'
import { buildApp, startSimulator } from './helpers/app.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import { duplicates, identity, messageIdentity, numbered, until } from './queue-helpers.js'

const COUNT = 1000

for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: ${COUNT} messages enqueued → all sent exactly once, records and stats agree with the simulator`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('throughput') } })
    const messages = Array.from({ length: COUNT }, (_, i) => numbered(`T${kind[0]}`, i))

    // Half as batches of 100, half one by one, all at once.
    const batches = Array.from({ length: 5 }, (_, b) => app.wechat.enqueue(messages.slice(b * 100, b * 100 + 100)))
    const singles = messages.slice(500).map((m) => app.wechat.enqueue(m))
    const results = (await Promise.all([...batches, ...singles])).flat()
    t.equal(results.length, COUNT)
    t.equal(new Set(results.map((r) => r.id)).size, COUNT, 'one id per message')
    t.ok(results.every((r) => r.status === 'pending'), 'pending when enqueue resolves')

    await until(`${COUNT} accepted`, () => sim.accepted.length >= COUNT, 60_000)
    await until('stats: all sent', async () => (await app.wechat.stats()).sent === COUNT, 10_000)

    const records = await Promise.all(results.map((r) => app.wechat.status(r.id)))
    const byIdentity = new Map(sim.accepted.map((m) => [identity(m), m]))
    let matched = 0
    for (const [i, record] of records.entries()) {
      const accepted = byIdentity.get(messageIdentity(messages[i]))
      if (record?.status === 'sent' && record.msgid !== undefined && record.msgid === accepted?.msgid && record.source === 'queue') matched++
    }
    t.equal(matched, COUNT, "every record is 'sent' with the msgid the simulator gave that message")

    t.equal(sim.accepted.length, COUNT, 'exactly one acceptance per message')
    t.same(duplicates(sim.accepted), { byIdentity: 0, byMsgid: 0 }, 'no duplicates by touser+data or msgid')
    const stats = await app.wechat.stats()
    t.equal(stats.total, COUNT)
    t.equal(stats.sent, sim.accepted.length, 'stats.sent agrees with the simulator')
    t.equal(stats.pending + stats.sending + stats.failed + stats.unknown, 0)
    t.equal(sim.counters.send, COUNT, 'no extra calls')
  })
}
