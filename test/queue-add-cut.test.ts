/**
 * A Redis connection that breaks in the middle of a queue add. When Redis has run every job add of
 * the pipeline but the app hears back about the first only (Redis killed before it sent the rest of
 * its replies, with appendfsync always keeping what it ran), ioredis rejects the rest with "Command
 * aborted due to connection close". That was read as "not queued": a keyed enqueue discarded its
 * claims and freed its key, the jobs ran all the same, and the caller's retry under the key queued
 * every message a second time (seen in the fleet test at a Redis outage: one enqueue, two ids).
 * Such an add is now added again under the same job ids once the connection is back (a no-op for
 * what Redis has), and is "maybe queued" when it does not come back in time: the records stay and
 * a retry under the key re-adds the same job ids.
 */
import { test } from 'tap'
import { buildApp, startSimulator } from './helpers/app.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import { cuttingProxy } from './helpers/redis-proxy.js'
import { numbered, settled, sleep } from './queue-helpers.js'
import { addFailure } from '../lib/delivery/add-failure.js'
import { ADD_ANSWER_MS } from '../lib/delivery/bullmq-queue.js'
import { AddInterruptedError } from '../lib/delivery/queue.js'
import { LateAdds } from '../lib/delivery/late-adds.js'
import type { FastifyBaseLogger } from 'fastify'
import type { Test } from 'tap'

/** The app on a cutting proxy, its queue's scripts loaded (so an add is nothing but its job adds). */
async function cutApp (t: Test, name: string): Promise<{ app: Awaited<ReturnType<typeof buildApp>>, sim: Awaited<ReturnType<typeof startSimulator>>, proxy: Awaited<ReturnType<typeof cuttingProxy>> }> {
  const sim = await startSimulator(t)
  const proxy = await cuttingProxy(t, await redisFor(t, 'bullmq') as string)
  const app = await buildApp(t, sim, { redisUrl: proxy.url, plugin: { keyPrefix: uniquePrefix(name) } })
  const warm = await app.wechat.enqueue([numbered(`${name}W`, 1), numbered(`${name}W`, 2)], { idempotencyKey: `${name}-warm` })
  await settled(app, warm.map((r) => r.id))
  return { app, sim, proxy }
}

type QueueError = Error & { code?: string, messageIds?: string[] }
/** longer than ADD_ANSWER_MS: the add's connection is not back in time */
const DOWN_MS = ADD_ANSWER_MS + 1500

test('a keyed enqueue whose add was cut after Redis ran it, the connection back at once: the add is made again and resolves, each message sent once', async (t) => {
  const { app, sim, proxy } = await cutApp(t, 'cutQ')
  const messages = [numbered('CutQ', 1), numbered('CutQ', 2)]
  const cut = proxy.cutAfterFirstReply(['subscribe-send', 'oCutQ-user-00002'], 2)
  const results = await app.wechat.enqueue(messages, { idempotencyKey: 'order-cut' })
  await cut
  t.equal(results.length, 2, 'the enqueue resolves')
  await settled(app, results.map((r) => r.id))
  await sleep(500)
  for (const m of messages) t.equal(sim.accepted.filter((a) => a.touser === m.toUser).length, 1, `${m.toUser} sent once`)
})

test('a keyed enqueue whose add was cut after Redis ran it, the connection away longer: maybe queued; the retry under the key answers the same messages, each sent once', async (t) => {
  const { app, sim, proxy } = await cutApp(t, 'cutK')
  const messages = [numbered('CutK', 1), numbered('CutK', 2)]
  const cut = proxy.cutAfterFirstReply(['subscribe-send', 'oCutK-user-00002'], 2, DOWN_MS)
  const error = await app.wechat.enqueue(messages, { idempotencyKey: 'order-cut' }).then(() => undefined, (err: QueueError) => err)
  await cut
  t.match(error, { code: 'FST_WECHAT_QUEUE', statusCode: 503 }, 'the enqueue fails with a coded error')
  t.match(error?.message, /retry with the same idempotencyKey/, 'that says to retry under the key')
  t.equal(error?.messageIds?.length, 2, 'and names both messages (they may be queued)')

  await sleep(DOWN_MS)
  const retried = await app.wechat.enqueue(messages, { idempotencyKey: 'order-cut' })
  t.same(retried.map((r) => r.id), error?.messageIds, 'the retry answers the same messages')
  t.ok(retried.every((r) => r.duplicate === true), 'as repeats')
  await settled(app, retried.map((r) => r.id))
  await sleep(500)
  for (const m of messages) t.equal(sim.accepted.filter((a) => a.touser === m.toUser).length, 1, `${m.toUser} sent once`)
})

test('an enqueue without a key whose add was cut after Redis ran it, the connection away longer: the error names the messages as maybe queued, and they are sent', async (t) => {
  const { app, sim, proxy } = await cutApp(t, 'cutU')
  // 33 messages: a batch job of 32 and a single job, one pipeline of two job adds
  const messages = Array.from({ length: 33 }, (_, i) => numbered('CutU', i + 1))
  const cut = proxy.cutAfterFirstReply(['subscribe-send', 'oCutU-user-00033'], 2, DOWN_MS)
  const error = await app.wechat.enqueue(messages).then(() => undefined, (err: QueueError) => err)
  await cut
  t.match(error, { code: 'FST_WECHAT_QUEUE', statusCode: 503 })
  t.match(error?.message, /may still be sent/, 'it says the messages may be queued all the same')
  t.equal(error?.messageIds?.length, 33, 'and names them')
  await settled(app, error?.messageIds ?? [])
  const records = await Promise.all((error?.messageIds ?? []).map((id) => app.wechat.status(id)))
  t.ok(records.every((record) => record?.status === 'sent'), 'each has its record, sent')
  t.equal(sim.accepted.filter((a) => a.touser.startsWith('oCutU-')).length, 33, 'each sent once')
})

// ioredis writes again on reconnect the commands it wrote and got no answer to, unless its reconnects
// are refused maxRetriesPerRequest + 1 times first (as from a Redis that is down): then it rejects
// them (MaxRetriesPerRequestError) and never sends them. Whether Redis ran them is unknown: the add is
// made again once the connection is back, within the add's time.
test('an enqueue without a key whose add was cut before Redis ran it, its reconnects refused a moment: added again once the connection is back, and resolves', async (t) => {
  const { app, sim, proxy } = await cutApp(t, 'cutD')
  const messages = Array.from({ length: 33 }, (_, i) => numbered('CutD', i + 1))
  const cut = proxy.dropAndCut(['subscribe-send', 'oCutD-user-00033'], 500)
  const results = await app.wechat.enqueue(messages)
  await cut
  t.equal(results.length, 33, 'the enqueue resolves')
  await settled(app, results.map((r) => r.id))
  t.equal(sim.accepted.filter((a) => a.touser.startsWith('oCutD-')).length, 33, 'each sent once')
})

test('an add cut before Redis ran it, the connection away longer: maybe queued, then made again in the background once the connection is back', async (t) => {
  const { app, sim, proxy } = await cutApp(t, 'cutN')
  const messages = Array.from({ length: 33 }, (_, i) => numbered('CutN', i + 1))
  const cut = proxy.dropAndCut(['subscribe-send', 'oCutN-user-00033'], DOWN_MS)
  const error = await app.wechat.enqueue(messages).then(() => undefined, (err: QueueError) => err)
  await cut
  t.match(error, { code: 'FST_WECHAT_QUEUE', statusCode: 503 })
  t.match(error?.message, /may still be sent/, 'it says the messages may be queued all the same')
  t.equal(error?.messageIds?.length, 33, 'and names them')
  t.equal(sim.accepted.filter((a) => a.touser.startsWith('oCutN-')).length, 0, 'none was sent yet: Redis never had the add')
  await settled(app, error?.messageIds ?? [])
  const records = await Promise.all((error?.messageIds ?? []).map((id) => app.wechat.status(id)))
  t.ok(records.every((record) => record?.status === 'sent'), 'each record ends sent (not pending for ever)')
  t.equal(sim.accepted.filter((a) => a.touser.startsWith('oCutN-')).length, 33, 'each sent once')
})

test('an add that went unanswered (a stall) and was then cut off: maybe queued, then made again in the background once the connection is back', async (t) => {
  const { app, sim, proxy } = await cutApp(t, 'cutS')
  const messages = Array.from({ length: 33 }, (_, i) => numbered('CutS', i + 1))
  // held past ADD_ANSWER_MS (the enqueue hears "maybe queued"), then cut, reconnects refused a moment
  const cut = proxy.dropAndCut(['subscribe-send', 'oCutS-user-00033'], 500, ADD_ANSWER_MS + 500)
  const error = await app.wechat.enqueue(messages).then(() => undefined, (err: QueueError) => err)
  t.match(error?.message, /did not answer the add/, 'the add went unanswered')
  t.equal(error?.messageIds?.length, 33, 'and the error names the messages')
  await cut
  await settled(app, error?.messageIds ?? [])
  t.equal(sim.accepted.filter((a) => a.touser.startsWith('oCutS-')).length, 33, 'each sent once')
})

test('a keyed retry whose re-add of the first call\'s messages is cut off too: maybe queued, naming them', async (t) => {
  const { app, proxy } = await cutApp(t, 'cutR')
  const messages = [numbered('CutR', 1), numbered('CutR', 2)]
  // (delayed: their records stay pending, so the retry re-adds their jobs)
  const first = proxy.cutAfterFirstReply(['subscribe-send', 'oCutR-user-00002'], 2, DOWN_MS)
  const error = await app.wechat.enqueue(messages, { idempotencyKey: 'order-r', delay: 60_000 }).then(() => undefined, (err: QueueError) => err)
  await first
  t.equal(error?.messageIds?.length, 2, 'the first call: maybe queued')
  // the connection back, and the background add made again
  await sleep(DOWN_MS + 1500)
  const second = proxy.cutAfterFirstReply(['subscribe-send', 'oCutR-user-00002'], 2, DOWN_MS)
  const retryError = await app.wechat.enqueue(messages, { idempotencyKey: 'order-r', delay: 60_000 }).then(() => undefined, (err: QueueError) => err)
  await second
  t.match(retryError, { code: 'FST_WECHAT_QUEUE' })
  t.match(retryError?.message, /retry with the same idempotencyKey/, 'the retry says to retry under the key again')
  t.same(retryError?.messageIds, error?.messageIds, 'and names the first call\'s messages (their jobs may be queued)')
})

// BullMQ's Queue keeps the promise of its connection's setup (wait for ready, then an INFO for the
// Redis version) and every add awaits it: a setup that failed, the add connection cut under its INFO
// at boot (a Redis killed as the app started), failed every enqueue for the app's life (seen in a
// stress audit: 3,596 messages, none queued in 97 s after Redis answered). The add connection's Queue
// skips that check (the worker's connection, which never gives up a command, makes it).
test('the add connection cut under its setup at boot: enqueues work once it is back', async (t) => {
  const sim = await startSimulator(t)
  const proxy = await cuttingProxy(t, await redisFor(t, 'bullmq') as string)
  // each connection's first INFO is ioredis' ready check; a second one is BullMQ's version check
  proxy.cutAtNth('\r\ninfo\r\n', 2, 3000, 500)
  const app = await buildApp(t, sim, { redisUrl: proxy.url, plugin: { keyPrefix: uniquePrefix('cut-setup') } })
  await sleep(3500)
  const results: unknown[] = []
  for (let i = 1; i <= 3; i++) results.push(await app.wechat.enqueue(numbered('CutB', i)).then((r) => r[0]?.id, (err: Error) => err.message))
  t.ok(results.every((r) => typeof r === 'string' && /^[0-9a-f-]{36}$/.test(r)), `each enqueue resolves (${JSON.stringify(results)})`)
  await settled(app, results as string[])
  t.equal(sim.accepted.filter((a) => a.touser.startsWith('oCutB-')).length, 3, 'each sent once')
})

test('an add cut off again and again is made again by one background loop per job', async (t) => {
  const lines: string[] = []
  const log = { info: (_: unknown, msg: string) => lines.push(msg), warn: (_: unknown, msg: string) => lines.push(msg) } as unknown as FastifyBaseLogger
  const lateAdds = new LateAdds(log)
  t.teardown(() => lateAdds.close())
  let up = false
  const tries: string[][] = []
  const add = async (jobs: Array<{ jobId: string }>): Promise<void> => {
    tries.push(jobs.map((job) => job.jobId))
    if (!up) throw new Error('the connection is not back')
  }
  // a caller retrying under its key every few ms: the same jobs, again and again
  for (let i = 0; i < 50; i++) lateAdds.finish([{ jobId: 'a' }, { jobId: 'b' }], add)
  lateAdds.finish([{ jobId: 'b' }, { jobId: 'c' }], add)
  await sleep(2500)
  t.ok(tries.length <= 6, `two loops, about a try a second each (${tries.length} tries)`)
  t.same(new Set(tries.map((ids) => ids.join())), new Set(['a,b', 'c']), 'b is in one loop only')
  up = true
  await sleep(1200)
  t.equal(lines.filter((line) => /went through on its own again/.test(line)).length, 2, 'both went through')
  const before = tries.length
  lateAdds.finish([{ jobId: 'a' }], add)
  await sleep(1200)
  t.equal(tries.length, before + 1, 'a job whose loop ended can be made again')
})

test('which failed adds may have been queued', async (t) => {
  const named = (name: string, message: string): Error => Object.assign(new Error(message), { name })
  const notWritten = new Error("Stream isn't writeable and enableOfflineQueue options is false")
  t.equal(addFailure(notWritten, 5), notWritten, 'an add that never left: not queued')
  const refused = named('ReplyError', 'LOADING Redis is loading the dataset in memory')
  t.equal(addFailure(refused, 1), refused, 'an error reply to the only job: not queued')
  t.type(addFailure(refused, 2), AddInterruptedError, 'an error reply to one job of several (the ones before it were added): maybe queued')
  for (const cut of [named('AbortError', 'Command aborted due to connection close'), named('MaxRetriesPerRequestError', 'Reached the max retries per request limit (which is 1).'), new Error('Connection is closed.')]) {
    const outcome = addFailure(cut, 1) as Error
    t.type(outcome, AddInterruptedError, `${cut.name}: maybe queued`)
    t.equal(outcome.cause, cut, 'with the cause kept')
  }
})
