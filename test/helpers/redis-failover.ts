/**
 * Apps on a Redis Cluster or a Sentinel-managed Redis, and the failover scenario both run: a fleet
 * of two instances with messages queued, the master holding the app's keys goes away, sends must
 * continue and nothing accepted into the queue may be lost.
 */
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import fastifyRedis from '@fastify/redis'
import type { FastifyRedisPluginOptions } from '@fastify/redis'
import type { Test } from 'tap'
import wechatPush from '../../lib/index.js'
import type { WechatSimulator } from '../../lib/testing/index.js'
import type { SubscribeMessage } from '../../lib/public-types.js'
import { startSimulator } from './app.js'
import type { Teardown } from './app.js'
import { uniquePrefix } from './redis-server.js'
import { sleep } from './redis-cluster.js'
import { duplicates, identity, messageIdentity, numbered, until } from '../queue-helpers.js'

/**
 * One app with @fastify/redis registered with `redisOptions` as given (`{ client: cluster, closeClient: true }`
 * or `{ sentinels, name }`), and the plugin pointed at `sim` with buildApp's defaults.
 */
export async function appOn (t: Teardown, sim: WechatSimulator, redisOptions: FastifyRedisPluginOptions, plugin: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyRedis, redisOptions)
  await app.register(wechatPush, {
    appId: sim.appId,
    appSecret: sim.appSecret,
    baseUrl: sim.url,
    retry: { attempts: 3, minDelay: 5, maxDelay: 20 },
    timeout: 1000,
    ...plugin
  } as never)
  await app.ready()
  return app
}

export interface FailoverTarget {
  /** @fastify/redis options for one more app instance on this deployment */
  redis (): FastifyRedisPluginOptions
  /**
   * Make every write so far durable on the replica: one write on the connection to the master
   * serving `key`, then `WAIT 1`. Answers how many replicas acknowledged, and the replica's lag in
   * bytes just before (what an unfenced crash would have lost).
   */
  fence (key: string): Promise<{ acked: number, lagBytes: number }>
  /** the failure (kill the master, or SENTINEL FAILOVER); resolves once it is under way */
  fail (key: string): Promise<void>
  /** resolves when a new master serves `key` */
  recovered (key: string): Promise<void>
  /** resolves when the topology is final (Sentinel: the old master is demoted); default: at once */
  settled? (): Promise<void>
  /** more queue options for the app instances (e.g. `replicas`) */
  queue?: Record<string, unknown>
}

export interface FailoverReport {
  /** from the failure to a new master serving the app's keys */
  failoverMs: number
  /** from the failure to a final topology */
  settledMs: number
  /** how far the replica was behind just before the fence, in bytes */
  lagBytes: number
  directSends: { ok: number, failed: number }
  /** enqueues made while the deployment failed over: accepted, refused (coded error), accepted but never delivered */
  during: { accepted: number, refused: number, lost: number }
  /** refused enqueues retried with their idempotency key that were answered 'pending' and never sent */
  orphans: number
  /** messages WeChat accepted more than once */
  duplicates: number
  /** the records of the messages queued before the failure */
  statuses: Record<string, number>
  /** the store's counters after */
  stats: Record<string, number>
}

const QUEUED = 300

/**
 * Two instances, 300 messages queued (a limiter keeps most of them waiting), a fence, then the
 * failure. While the deployment fails over, both instances keep sending directly and enqueueing.
 * Checked here, for every topology: no direct send fails, every message queued before the failure
 * reaches WeChat, a refused enqueue is a coded error, the token survives (no refetch) and a new
 * instance reads it. What happened to the enqueues made during the failover is reported.
 */
export async function failoverScenario (t: Test, target: FailoverTarget): Promise<FailoverReport> {
  const sim = await startSimulator(t)
  const keyPrefix = uniquePrefix('failover')
  const plugin = { keyPrefix, timeout: 5000, queue: { concurrency: 4, limiter: { max: 100, duration: 1000 }, ...target.queue } }
  const apps = await Promise.all([0, 1].map(() => appOn(t, sim, target.redis(), plugin)))
  const token = await apps[0].wechat.getToken()
  t.equal(await apps[1].wechat.getToken(), token, 'one token for the fleet')
  const tokenKey = `${keyPrefix}{${sim.appId}}:token`

  const queued = Array.from({ length: QUEUED }, (_, i) => numbered('Q', i))
  const ids: string[] = []
  for (let i = 0; i < QUEUED; i += 100) ids.push(...(await apps[i / 100 % 2].wechat.enqueue(queued.slice(i, i + 100))).map((r) => r.id))
  const { acked, lagBytes } = await target.fence(tokenKey)
  t.equal(acked, 1, 'the replica acknowledged every queued message before the failure')

  const started = Date.now()
  await target.fail(tokenKey)
  const state = { recovering: true }
  const recovered = target.recovered(tokenKey).then(() => Date.now() - started).finally(() => { state.recovering = false })
  const direct: Promise<PromiseSettledResult<unknown>>[] = []
  const during: { app: FastifyInstance, key: string, message: SubscribeMessage, result: Promise<PromiseSettledResult<{ id: string }[]>> }[] = []
  for (let i = 0; state.recovering || i < 10; i++) {
    for (const [k, app] of apps.entries()) {
      direct.push(settle(app.wechat.send(numbered(`D${k}`, i))))
      const message = numbered(`E${k}`, i)
      const key = `E${k}-${i}`
      during.push({ app, key, message, result: settle(app.wechat.enqueue(message, { idempotencyKey: key })) })
    }
    await sleep(100)
  }
  const failoverMs = await recovered
  const sends = await Promise.all(direct)
  const enqueues = await Promise.all(during.map((d) => d.result))
  const failedSends = sends.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  t.equal(failedSends.length, 0, `every direct send during the failover succeeded (${sends.length})${failedSends.length ? `: ${failedSends[0].reason.message}` : ''}`)
  const refused = enqueues.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  for (const reason of new Set(refused.map((r) => `${r.reason.code}: ${r.reason.message}`))) t.comment(`enqueue refused during the failover: ${reason}`)
  t.ok(refused.every((r) => r.reason.code === 'FST_WECHAT_QUEUE'), 'a refused enqueue is a coded error')

  await target.settled?.()
  const settledMs = Date.now() - started
  const delivered = (of: Set<string>): number => new Set(sim.accepted.map(identity).filter((id) => of.has(id))).size
  const before = new Set(queued.map(messageIdentity))
  await until('every message queued before the failure delivered', () => delivered(before) === before.size, 60_000, 100).catch(() => {})
  t.equal(before.size - delivered(before), 0, `nothing queued before the failure is lost (${before.size} messages)`)
  const acceptedDuring = new Set(during.filter((_, i) => enqueues[i].status === 'fulfilled').map((d) => messageIdentity(d.message)))
  await until('every enqueue accepted during the failover delivered', () => delivered(acceptedDuring) === acceptedDuring.size, 30_000, 100).catch(() => {})

  // A careful caller retries a refused enqueue with the same idempotency key. A refused create may
  // still have been applied after its deadline (the client retried it on the new master): the retry
  // then answers that record, 'pending', with no job behind it.
  const refusedOnes = during.filter((_, i) => enqueues[i].status === 'rejected')
  await Promise.all(refusedOnes.map((d) => d.app.wechat.enqueue(d.message, { idempotencyKey: d.key })))
  const retried = new Set(refusedOnes.map((d) => messageIdentity(d.message)))
  await until('retried enqueues delivered', () => delivered(retried) === retried.size, 30_000, 100).catch(() => {})

  // the queue is done when the queued messages' records are final (a job in flight at the failure
  // comes back once its lock expires, 15 s)
  const statuses = async (): Promise<Record<string, number>> => {
    const counts: Record<string, number> = {}
    for (const record of await Promise.all(ids.map((id) => apps[0].wechat.status(id).catch(() => null)))) {
      const status = record?.status ?? 'missing'
      counts[status] = (counts[status] ?? 0) + 1
    }
    return counts
  }
  await until('the records of the queued messages final', async () => (await statuses()).sent === ids.length, 25_000, 250).catch(() => {})

  t.equal(sim.tokenFetches().stable_token, 1, 'the shared token survived the failover: no refetch')
  const late = await appOn(t, sim, target.redis(), { ...plugin, queue: false })
  t.equal(await late.wechat.getToken(), token, 'a new instance reads the shared token from the new master')
  const stats = await late.wechat.stats()
  return {
    failoverMs,
    settledMs,
    lagBytes,
    directSends: { ok: sends.length - failedSends.length, failed: failedSends.length },
    during: { accepted: acceptedDuring.size, refused: refused.length, lost: acceptedDuring.size - delivered(acceptedDuring) },
    orphans: retried.size - delivered(retried),
    duplicates: duplicates(sim.accepted).byIdentity,
    statuses: await statuses(),
    stats: { total: stats.total, sent: stats.sent, sending: stats.sending, pending: stats.pending, failed: stats.failed }
  }
}

/** Settled at once, so a rejection waiting to be looked at is never an unhandled one. */
function settle<T> (promise: Promise<T>): Promise<PromiseSettledResult<T>> {
  return promise.then((value) => ({ status: 'fulfilled', value }), (reason) => ({ status: 'rejected', reason }))
}

/** The report as test comments. */
export function comment (t: Test, report: FailoverReport): void {
  const { failoverMs, settledMs, lagBytes, ...rest } = report
  t.comment(`failover ${failoverMs} ms, settled ${settledMs} ms, replica lag before the fence ${lagBytes} bytes`)
  t.comment(JSON.stringify(rest))
}
