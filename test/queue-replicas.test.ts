import { test } from 'tap'
import { Redis } from 'ioredis'
import { buildApp, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { numbered, until } from './queue-helpers.js'

/**
 * queue.replicas: an enqueue resolves only once that many replicas have its jobs (Redis WAIT on
 * the plugin's own add connection). Redis replicates asynchronously, so without it a failover can
 * drop an add the master acknowledged (test/sentinel.test.ts measures both). When the replicas do
 * not confirm in time, the enqueue is refused with a coded error but not undone: the job may exist,
 * and a retry with the same idempotency key re-adds the same job id instead of a second message.
 */
test('queue.replicas: confirmed by the replica → resolves; replica gone → refused, not undone, a keyed retry sends once', async (t) => {
  const master = await startRedis()
  t.teardown(() => master.stop())
  const replica = await startRedis()
  t.teardown(() => replica.stop())
  const admin = new Redis(master.url)
  t.teardown(() => admin.disconnect())
  const replicaClient = new Redis(replica.url)
  t.teardown(() => replicaClient.disconnect())
  await replicaClient.replicaof('127.0.0.1', new URL(master.url).port)
  await until('the replica is in sync', async () => /connected_slaves:1/.test(await admin.info('replication')) && /master_link_status:up/.test(await replicaClient.info('replication')))

  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { redisUrl: master.url, plugin: { keyPrefix: uniquePrefix('replicas'), queue: { replicas: 1, replicaTimeout: 2000 } } })
  const [kept] = await app.wechat.enqueue(numbered('R', 1), { idempotencyKey: 'r-1' })
  await until('sent', async () => (await app.wechat.status(kept?.id as string))?.status === 'sent')

  await replicaClient.replicaof('NO', 'ONE') // the replica leaves: nobody can confirm
  await until('no replica left', async () => /connected_slaves:0/.test(await admin.info('replication')))
  const started = Date.now()
  const refused = await app.wechat.enqueue(numbered('R', 2), { idempotencyKey: 'r-2' }).then(() => null, (err: unknown) => err as Record<string, unknown>)
  t.match(refused, { code: 'FST_WECHAT_QUEUE', message: /0 of 1 replica\(s\) confirmed the jobs within 2000 ms.*retry with the same idempotencyKey/ })
  t.ok(Date.now() - started >= 1900, 'after the replica timeout')
  // The master has the job: it runs; the record was not undone.
  await until('the unconfirmed message was sent anyway', () => sim.accepted.length === 2)
  // (its record turns sent once the worker has WeChat's answer, a moment after WeChat has the message)
  await until('both records sent', async () => (await app.wechat.stats()).sent === 2)
  const [again] = await app.wechat.enqueue(numbered('R', 2), { idempotencyKey: 'r-2' })
  t.match(again, { status: 'sent' }, 'the retry under the same key finds the first message')
  t.equal((await app.wechat.stats()).total, 2, 'one record per message: the retry did not make a second one')
  t.equal(sim.accepted.length, 2, 'each message reached WeChat once')
})

// Without replicas, an enqueue without a key was refused with "retry with the same idempotencyKey"
// (there was none: a retry sends twice), its credits released and no record written, while its job
// ran on the master anyway. Now the records are written, the error names the ids, and boot warns.
// Failed before.
test('queue.replicas on a Redis without replicas: a startup warning; an unconfirmed enqueue names its ids, which still go out', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sim = await startSimulator(t)
  const logs = captureLogs('warn')
  const app = await buildApp(t, sim, { redisUrl: redis.url, logger: logs.logger, plugin: { keyPrefix: uniquePrefix('replicas'), queue: { replicas: 1, replicaTimeout: 200 } } })
  await until('the startup warning', () => logs.parsed().some((l) => /queue\.replicas is 1 but the Redis master has 0 replica/.test(String(l.msg))))
  const refused = await app.wechat.enqueue([numbered('U', 1), numbered('U', 2)]).then(() => null, (err: unknown) => err as Record<string, unknown>)
  t.match(refused, { code: 'FST_WECHAT_QUEUE', message: /replicas did not confirm it.*may still be sent.*retry only under an idempotencyKey/ })
  t.notMatch(String(refused?.message), /retry with the same idempotencyKey/)
  const ids = refused?.messageIds as string[]
  t.equal(ids.length, 2)
  await until('both sent', async () => (await Promise.all(ids.map((id) => app.wechat.status(id)))).every((r) => r?.status === 'sent'))
  t.equal(sim.accepted.length, 2)
  t.equal((await app.wechat.stats()).total, 2)
})

// Two paths the first fixes missed (a review found both; each failed before):
// - a handler push whose add the replicas did not confirm was retried for 5 minutes, then counted as
//   failed with its credit refunded, while it was sent;
// - a WAIT that itself failed (an ACL, a dropped connection) made a successful add "not accepted": no
//   ids, records and keys undone, so a keyed retry queued it twice.
test('queue.replicas: an unconfirmed handler push counts as queued; a failing WAIT is "unconfirmed", not "not queued"', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, {
    redisUrl: redis.url,
    plugin: { keyPrefix: uniquePrefix('replicas'), queue: { replicas: 1, replicaTimeout: 200 } },
    setup: (app) => { app.post('/ship', async (request, reply) => { reply.wechatPush(numbered('H', 1)); return { ok: true } }) }
  })
  t.equal((await app.inject({ method: 'POST', url: '/ship' })).statusCode, 200)
  await until('the push counted', () => app.wechat.handlerPushes().waiting === 0)
  t.match(app.wechat.handlerPushes(), { queued: 1, failed: 0 })
  await until('sent', () => sim.accepted.length === 1)

  const admin = new Redis(redis.url)
  t.teardown(() => admin.disconnect())
  await admin.call('ACL', 'SETUSER', 'default', '-wait')
  const refused = await app.wechat.enqueue(numbered('W', 1), { idempotencyKey: 'w-1' }).then(() => null, (err: unknown) => err as Record<string, unknown>)
  t.match(refused, { code: 'FST_WECHAT_QUEUE', message: /confirmation failed.*NOPERM/ })
  t.equal((refused?.messageIds as string[]).length, 1)
  await until('sent anyway', () => sim.accepted.length === 2)
  await admin.call('ACL', 'SETUSER', 'default', '+wait')
  t.match(await app.wechat.enqueue(numbered('W', 1), { idempotencyKey: 'w-1' }), [{ id: (refused?.messageIds as string[])[0] }], 'the keyed retry finds it')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(sim.accepted.length, 2, 'sent once')
})
