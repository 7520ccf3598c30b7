import { test } from 'tap'
import { buildApp, startSimulator } from './helpers/app.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import { numbered, settled, sleep } from './queue-helpers.js'

for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: an idempotency key enqueued twice, then 20 times concurrently → one message, one id`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('idem') } })

    const [first] = await app.wechat.enqueue(numbered('I', 1), { idempotencyKey: 'order-1:shipped' })
    const [second] = await app.wechat.enqueue(numbered('I', 1), { idempotencyKey: 'order-1:shipped' })
    t.equal(second.id, first.id, 'sequential: same id')
    t.equal(first.duplicate, undefined, 'the first is no repeat')
    t.equal(second.duplicate, true, 'the repeat says so (an audit: nothing did)')

    // 20 parallel enqueues of another key, each with a distinct message: only the first one counts.
    const parallel = (await Promise.all(Array.from({ length: 20 }, (_, i) => app.wechat.enqueue(numbered('J', i), { idempotencyKey: 'order-2:shipped' })))).flat()
    t.equal(new Set(parallel.map((r) => r.id)).size, 1, 'concurrent: one id for all 20')

    await settled(app, [first.id, parallel[0].id])
    // Once sent, the key still maps to the same message.
    const [late] = await app.wechat.enqueue(numbered('I', 1), { idempotencyKey: 'order-1:shipped' })
    t.same(late, { id: first.id, status: 'sent', duplicate: true }, 'after sending: same id, its status')
    await sleep(300)

    t.equal(sim.accepted.length, 2, 'one message per key at the simulator')
    t.equal(sim.counters.send, 2)
    t.equal(sim.accepted.filter((m) => m.touser === 'oI-user-00001').length, 1)
    const stats = await app.wechat.stats()
    t.equal(stats.total, 2, 'one record per key')
    t.equal(stats.sent, 2)
    t.equal((await app.wechat.status(first.id))?.idempotencyKey, 'order-1:shipped')
  })

  test(`${kind} queue: a batch with a key uses key:index per item`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('idem-batch') } })
    const batch = [numbered('B', 1), numbered('B', 2), numbered('B', 3)]
    const results = await Promise.all(Array.from({ length: 5 }, () => app.wechat.enqueue(batch, { idempotencyKey: 'import-7' })))
    t.same(results.map((r) => r.map((x) => x.id)), Array.from({ length: 5 }, () => results[0].map((x) => x.id)), 'same ids each time')
    t.equal(new Set(results[0].map((r) => r.id)).size, 3)
    await settled(app, results[0].map((r) => r.id))
    await sleep(300)
    t.equal(sim.accepted.length, 3)
    t.equal((await app.wechat.status(results[0][1].id))?.idempotencyKey, 'import-7:1')
  })

  // An array of one kept the bare key (only arrays of two or more were keyed key:index), so its
  // message and the same message first in a later, longer array were queued twice. Failed before.
  test(`${kind} queue: an array of one is keyed key:0 like any array; a single message keeps the bare key`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('idem-one') } })
    const [alone] = await app.wechat.enqueue([numbered('O', 1)], { idempotencyKey: 'import-8' })
    const [first, second] = await app.wechat.enqueue([numbered('O', 1), numbered('O', 2)], { idempotencyKey: 'import-8' })
    t.equal(first?.id, alone?.id, 'the first item of the longer array is the same message')
    t.not(second?.id, alone?.id)
    const [bare] = await app.wechat.enqueue(numbered('O', 3), { idempotencyKey: 'import-8' })
    t.not(bare?.id, alone?.id, 'a single message (not an array) under the bare key is another message')
    await settled(app, [alone, second, bare].map((r) => r?.id as string))
    await sleep(300)
    t.equal(sim.accepted.length, 3)
    t.equal((await app.wechat.status(alone?.id as string))?.idempotencyKey, 'import-8:0')
    t.equal((await app.wechat.status(bare?.id as string))?.idempotencyKey, 'import-8')
  })
}
