/**
 * enqueue() of large arrays (issue #3: "1,000 messages enqueued → all sent"; DESIGN.md: no size limit)
 * and the `changes` of `validation: 'truncate'` in its results (issue #5). An array is handed to the
 * queue in chunks (lib/delivery/enqueue.ts ENQUEUE_CHUNK): the tests below cross chunk boundaries.
 */
import { test } from 'tap'
import Fastify from 'fastify'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import { duplicates, identity, inspectQueue, messageIdentity, numbered, queuedMessages, sleep, until } from './queue-helpers.js'
import { ENQUEUE_CHUNK, Enqueuer, MAX_ENQUEUE } from '../lib/delivery/enqueue.js'
import type { MessageQueue, QueuedJob } from '../lib/delivery/queue.js'
import { Credits } from '../lib/delivery/credits.js'
import { RecordWriter } from '../lib/delivery/record-writer.js'
import { LateUndo } from '../lib/store/late-undo.js'
import { MemoryStore } from '../lib/store/memory.js'
import { systemClock } from '../lib/options.js'
import type { SubscribeMessage } from '../lib/public-types.js'

const COUNT = 1000
const LONG_THING = 'A very long product title that WeChat would refuse'

interface CodedError { code?: string, violations?: Array<{ key: string, rule: string }>, messageIds?: string[], message: string }

async function rejection (promise: Promise<unknown>): Promise<CodedError> {
  try {
    await promise
  } catch (err) {
    return err as CodedError
  }
  throw new Error('expected a rejection')
}

for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: one enqueue() of an array of ${COUNT} → ${COUNT} results in input order, all sent once`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('enqueue-large') } })
    const messages = Array.from({ length: COUNT }, (_, i) => numbered(`L${kind[0]}`, i))

    const results = await app.wechat.enqueue(messages)
    t.equal(results.length, COUNT, 'one result per message')
    t.equal(new Set(results.map((r) => r.id)).size, COUNT, 'distinct ids')
    t.ok(results.every((r) => r.status === 'pending' && !('changes' in r)), "all 'pending', no changes")

    await until(`${COUNT} accepted`, () => sim.accepted.length >= COUNT, 60_000)
    await until('stats: all sent', async () => (await app.wechat.stats()).sent === COUNT, 20_000)

    const records = await Promise.all(results.map((r) => app.wechat.status(r.id)))
    const byIdentity = new Map(sim.accepted.map((m) => [identity(m), m]))
    let inOrder = 0
    for (const [i, record] of records.entries()) {
      const message = messages[i] as SubscribeMessage
      const accepted = byIdentity.get(messageIdentity(message))
      if (record?.status === 'sent' && record.toUser === message.toUser && record.msgid !== undefined && record.msgid === accepted?.msgid) inOrder++
    }
    t.equal(inOrder, COUNT, "result i is message i, 'sent' with the msgid the simulator gave it")
    t.equal(sim.accepted.length, COUNT, 'the simulator accepted each message')
    t.same(duplicates(sim.accepted), { byIdentity: 0, byMsgid: 0 }, 'none twice')
    const stats = await app.wechat.stats()
    t.equal(stats.total, COUNT)
    t.equal(stats.sent, COUNT)
  })

  test(`${kind} queue: an array of ${COUNT} under an idempotencyKey → key:index per item across chunks; a repeat queues nothing`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('enqueue-large-key') } })
    const messages = Array.from({ length: COUNT }, (_, i) => numbered(`K${kind[0]}`, i))

    const first = await app.wechat.enqueue(messages, { idempotencyKey: 'big' })
    t.equal(new Set(first.map((r) => r.id)).size, COUNT, 'distinct ids')
    const last = await app.wechat.status((first[COUNT - 1] as { id: string }).id)
    t.equal(last?.idempotencyKey, `big:${COUNT - 1}`, 'the last item is keyed by its index in the whole array')
    t.equal(last?.toUser, (messages[COUNT - 1] as SubscribeMessage).toUser)

    const again = await app.wechat.enqueue(messages, { idempotencyKey: 'big' })
    t.same(again.map((r) => r.id), first.map((r) => r.id), 'the repeat answers each item with its first id, in order')
    const alone = await app.wechat.enqueue([messages[0] as SubscribeMessage], { idempotencyKey: 'big' })
    t.equal(alone[0]?.id, first[0]?.id, 'an array of one under the same key is item 0')

    await until('stats: all sent', async () => (await app.wechat.stats()).sent === COUNT, 60_000)
    await sleep(200)
    t.equal(sim.accepted.length, COUNT, 'each message once at the simulator')
    t.equal((await app.wechat.stats()).total, COUNT)
  })

  test(`${kind} queue: an array of ${COUNT} with one invalid message in the middle → FST_WECHAT_INVALID_MESSAGE, nothing queued`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const keyPrefix = uniquePrefix('enqueue-large-invalid')
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix } })
    const messages: unknown[] = Array.from({ length: COUNT }, (_, i) => numbered(`I${kind[0]}`, i))
    const { toUser: _toUser, ...withoutUser } = messages[COUNT / 2 + 123] as SubscribeMessage
    messages[COUNT / 2 + 123] = withoutUser

    for (const options of [undefined, { idempotencyKey: 'bad-batch' }]) {
      const err = await rejection(app.wechat.enqueue(messages as SubscribeMessage[], options))
      t.equal(err.code, 'FST_WECHAT_INVALID_MESSAGE', options ? 'with a key' : 'without a key')
      t.match(err.violations, [{ key: 'toUser', index: COUNT / 2 + 123 }], 'the invalid message is named by its index, not the size of the array')
      t.match(err.message, new RegExp(`: message ${COUNT / 2 + 123}: toUser`))
    }
    await sleep(300)
    t.equal((await app.wechat.stats()).total, 0, 'no record')
    t.equal(sim.counters.send, 0, 'nothing sent')
    if (redisUrl !== undefined) {
      const queue = inspectQueue(redisUrl, keyPrefix, sim.appId)
      t.teardown(() => queue.close())
      t.equal(await queuedMessages(queue, 'waiting', 'active', 'delayed', 'completed', 'failed'), 0, 'no job in BullMQ')
    }
    // the key was not claimed: the valid array under it is queued whole
    const valid = messages.map((m, i) => i === COUNT / 2 + 123 ? numbered(`I${kind[0]}`, i) : m) as SubscribeMessage[]
    const results = await app.wechat.enqueue(valid, { idempotencyKey: 'bad-batch' })
    t.equal(results.length, COUNT)
    await until('stats: all sent', async () => (await app.wechat.stats()).sent === COUNT, 60_000)
    t.equal(sim.accepted.length, COUNT)
  })
}

test('an array longer than MAX_ENQUEUE is refused before it is read', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  const err = await rejection(app.wechat.enqueue(new Array(MAX_ENQUEUE + 1) as SubscribeMessage[]))
  t.equal(err.code, 'FST_WECHAT_INVALID_MESSAGE')
  t.match(err.violations, [{ key: 'messages', rule: 'size' }])
  t.equal((await app.wechat.stats()).total, 0)
})

test("validation: 'truncate': an enqueue result carries the changes of its message, only when there are some", async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { validation: 'truncate' } })
  const long = (): SubscribeMessage => { const m = shippedMessage(); return { ...m, data: { ...m.data, thing2: LONG_THING } } }
  const changed = [{ key: 'thing2', from: LONG_THING, to: /^A very long/, changes: [/\w/] }]

  const [repaired, valid] = await app.wechat.enqueue([long(), shippedMessage()])
  t.match(repaired?.changes, changed, 'the repaired message names its key')
  t.equal(repaired?.changes?.length, 1)
  t.notOk(valid !== undefined && 'changes' in valid, 'a valid message has no changes')

  const [single] = await app.wechat.enqueue(long())
  t.match(single?.changes, changed, 'a single message too')

  const keyed = [long(), shippedMessage()]
  const [keyedRepaired, keyedValid] = await app.wechat.enqueue(keyed, { idempotencyKey: 'trunc' })
  t.match(keyedRepaired?.changes, changed, 'under an idempotencyKey too')
  t.notOk(keyedValid !== undefined && 'changes' in keyedValid)
  const repeat = await app.wechat.enqueue(keyed, { idempotencyKey: 'trunc' })
  t.same(repeat, [{ id: keyedRepaired?.id, status: repeat[0]?.status, duplicate: true }, { id: keyedValid?.id, status: repeat[1]?.status, duplicate: true }], 'a repeat answers the first messages, as send() does a duplicate: without changes')

  await until('5 sent', async () => (await app.wechat.stats()).sent === 5)
  t.equal(sim.accepted.length, 5)
  t.ok(sim.accepted.every((m) => [...(m.data.thing2?.value ?? '')].length <= 20), 'what went out was cut to the limit')
})

/**
 * A queue whose add fails once on the `failOn`-th call (1-based): what an array of several chunks
 * leaves behind when the queue fails after some of its chunks went in.
 */
class FlakyQueue implements MessageQueue {
  readonly kind = 'memory' as const
  readonly durable = false
  readonly adds: QueuedJob[][] = []
  constructor (private failOn: number) {}
  async add (jobs: QueuedJob[]): Promise<void> {
    if (this.adds.length + 1 === this.failOn) {
      this.failOn = 0
      throw new Error('connection lost')
    }
    this.adds.push(jobs)
  }

  async start (): Promise<void> {}
  async close (): Promise<void> {}
  async resume (): Promise<number> { return 0 }
  quotaHeld (): boolean { return false }
  async pauseForQuota (): Promise<boolean> { return false }
}

function enqueuerWith (queue: MessageQueue): { enqueuer: Enqueuer, store: MemoryStore } {
  const store = new MemoryStore(systemClock)
  const log = Fastify({ logger: false }).log
  const options = { defaults: {}, validation: 'strict' as const, retentionSeconds: 3600 }
  const enqueuer = new Enqueuer(store, queue, options, log, new Credits(store, 'off', () => undefined, log), new RecordWriter(store, { ...options, clock: systemClock }), undefined, new LateUndo())
  return { enqueuer, store }
}

test('the queue fails after the first chunk of an array without a key: the error names the messages queued (a prefix), the rest left nothing', async (t) => {
  const queue = new FlakyQueue(2)
  const { enqueuer, store } = enqueuerWith(queue)
  const total = ENQUEUE_CHUNK * 2 + 200
  const err = await rejection(enqueuer.enqueue(Array.from({ length: total }, (_, i) => numbered('F', i))))
  t.equal(err.code, 'FST_WECHAT_QUEUE')
  t.match(err.message, new RegExp(`first ${ENQUEUE_CHUNK} of ${total} messages`))
  const queued = queue.adds.flat().map((job) => job.data.id)
  t.equal(queued.length, ENQUEUE_CHUNK, 'one chunk went in, and nothing after the failed one was tried')
  t.same(err.messageIds, queued, 'messageIds: exactly those queued, in input order')
  t.same(queue.adds.flat().map((job) => job.data.wire.touser), Array.from({ length: ENQUEUE_CHUNK }, (_, i) => numbered('F', i).toUser), 'the first ones of the array')
  t.equal((await store.stats()).total, ENQUEUE_CHUNK, 'records for the queued ones only')
})

test('the queue fails after the first chunk of an array under a key: the rest is unclaimed; the same key queues it and answers the rest as repeats', async (t) => {
  const queue = new FlakyQueue(2)
  const { enqueuer, store } = enqueuerWith(queue)
  const total = ENQUEUE_CHUNK * 2 + 200
  const messages = Array.from({ length: total }, (_, i) => numbered('G', i))
  const err = await rejection(enqueuer.enqueue(messages, { idempotencyKey: 'flaky' }))
  t.equal(err.code, 'FST_WECHAT_QUEUE')
  t.match(err.message, /retry with the same idempotencyKey/)
  t.equal(err.messageIds?.length, ENQUEUE_CHUNK)
  t.equal((await store.stats()).total, ENQUEUE_CHUNK, 'the claims of what was not queued are undone')

  const results = await enqueuer.enqueue(messages, { idempotencyKey: 'flaky' })
  t.same(results.slice(0, ENQUEUE_CHUNK).map((r) => r.id), err.messageIds, 'the queued ones answered with their ids')
  t.equal(new Set(results.map((r) => r.id)).size, total)
  const fresh = queue.adds.slice(1).flat().filter((job) => !(err.messageIds ?? []).includes(job.data.id)).map((job) => job.data.id)
  t.same(fresh, results.slice(ENQUEUE_CHUNK).map((r) => r.id), 'the others queued now, in order')
  t.equal((await store.stats()).total, total)
})

// A review of the chunked enqueue: (1) when re-adding the still-pending repeats of a key failed, the
// messages this call had just claimed were left 'pending' with no job (their credits taken); (2) when
// the store failed part way through the claims, the records already created stayed 'pending' for good.
// Both failed before (records left over).
test('a keyed enqueue whose repeats cannot be re-added, or whose claims fail part way, leaves no record behind', async (t) => {
  const { enqueuer, store } = enqueuerWith(new FlakyQueue(0))
  const first = [numbered('R', 0), numbered('R', 1)]
  const queued = await enqueuer.enqueue(first, { idempotencyKey: 'requeue' })
  t.equal((await store.stats()).total, 2)
  // the same key, one more message: the two repeats are re-added first, and that add fails
  const log = Fastify({ logger: false }).log
  const options = { defaults: {}, validation: 'strict' as const, retentionSeconds: 3600 }
  // (the same store, a queue whose next add fails)
  const shared = new Enqueuer(store, new FlakyQueue(1), options, log, new Credits(store, 'off', () => undefined, log), new RecordWriter(store, { ...options, clock: systemClock }), undefined, new LateUndo())
  const err = await rejection(shared.enqueue([...first, numbered('R', 2)], { idempotencyKey: 'requeue' }))
  t.equal(err.code, 'FST_WECHAT_QUEUE')
  t.equal((await store.stats()).total, 2, 'the new message\'s claim is undone')
  const retried = await shared.enqueue([...first, numbered('R', 2)], { idempotencyKey: 'requeue' })
  t.same(retried.slice(0, 2).map((r) => r.id), queued.map((r) => r.id), 'the repeats answered with their ids')
  t.equal((await store.stats()).total, 3, 'a retry queues the new one')

  // the store refuses the claims of the second chunk
  const brokenStore = new MemoryStore(systemClock)
  let creates = 0
  const createRecord = brokenStore.createRecord.bind(brokenStore)
  brokenStore.createRecord = async (...args: Parameters<MemoryStore['createRecord']>) => {
    if (++creates > ENQUEUE_CHUNK + 10) throw new Error('store down')
    return createRecord(...args)
  }
  const broken = new Enqueuer(brokenStore, new FlakyQueue(0), options, log, new Credits(brokenStore, 'off', () => undefined, log), new RecordWriter(brokenStore, { ...options, clock: systemClock }), undefined, new LateUndo())
  const claimErr = await rejection(broken.enqueue(Array.from({ length: ENQUEUE_CHUNK * 2 }, (_, i) => numbered('S', i)), { idempotencyKey: 'claims' }))
  t.equal(claimErr.code, 'FST_WECHAT_QUEUE')
  t.equal((await brokenStore.stats()).total, 0, 'every claim of the call is undone')
})
