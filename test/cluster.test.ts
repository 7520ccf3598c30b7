/**
 * The fleet's shared state on Redis Cluster: the same token, store and queue checks run on a single
 * Redis and on a private 3-master cluster (test/helpers/redis-cluster.ts). On the cluster every
 * script, MULTI and pipeline must stay in the one slot of `{appId}` (no CROSSSLOT, unlike WxJava #3378).
 */
import { test } from 'tap'
import type { Test } from 'tap'
import { Cluster, Redis } from 'ioredis'
import type { Command } from 'ioredis'
import { startSimulator } from './helpers/app.js'
import { startCluster } from './helpers/redis-cluster.js'
import { appOn } from './helpers/redis-failover.js'
import type { PrivateCluster } from './helpers/redis-cluster.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'
import { duplicates, identity, messageIdentity, numbered, until } from './queue-helpers.js'
import { keySpace } from '../lib/store/keys.js'
import { RedisStore } from '../lib/store/redis.js'
import type { MessageRecord } from '../lib/store/records.js'

type Client = Redis | Cluster

interface Backend {
  name: 'single Redis' | 'Redis Cluster'
  /** a client as an app would make it (callers close it, or hand it to @fastify/redis with closeClient) */
  client (): Client
  /** every key starting with `prefix`, with the node it lives on */
  keys (prefix: string): Promise<{ key: string, node: number }[]>
  /** the cluster slot of a key (0 on a single Redis) */
  slot (key: string): Promise<number>
}

function singleBackend (url: string): Backend {
  const port = Number(new URL(url).port)
  return {
    name: 'single Redis',
    client: () => new Redis(url, { maxRetriesPerRequest: 1 }),
    keys: async (prefix) => {
      const admin = new Redis(url)
      try {
        return (await admin.keys(`${prefix}*`)).map((key) => ({ key, node: port }))
      } finally {
        admin.disconnect()
      }
    },
    slot: async () => 0
  }
}

function clusterBackend (cluster: PrivateCluster): Backend {
  return {
    name: 'Redis Cluster',
    // the options an app would likely pass: fail a command after one retry, as buildApp does on one Redis
    client: () => cluster.client({ redisOptions: { maxRetriesPerRequest: 1 } }),
    keys: async (prefix) => {
      const found: { key: string, node: number }[] = []
      for (const node of cluster.nodes) {
        const keys = await node.command('KEYS', `${prefix}*`) as string[]
        found.push(...keys.map((key) => ({ key, node: node.port })))
      }
      return found
    },
    slot: (key) => cluster.slotOf(key)
  }
}

/** The commands a client sends, with their keys (to prove each one stays in one slot). */
function recordCommands (client: Client): { name: string, keys: string[] }[] {
  const seen: { name: string, keys: string[] }[] = []
  const send = client.sendCommand.bind(client) as (command: Command, ...rest: unknown[]) => unknown
  ;(client as { sendCommand: unknown }).sendCommand = (command: Command, ...rest: unknown[]) => {
    seen.push({ name: command.name, keys: command.getKeys().map(String) })
    return send(command, ...rest)
  }
  return seen
}

/** Every key under `prefix` is in one slot on one node, and carries the `{appId}` tag. */
async function oneSlot (t: Test, backend: Backend, prefix: string, appId: string): Promise<number> {
  const keys = await backend.keys(prefix)
  const slot = await backend.slot(`{${appId}}`)
  const slots = new Set(await Promise.all(keys.map(({ key }) => backend.slot(key))))
  t.ok(keys.every(({ key }) => key.startsWith(`${prefix}{${appId}}:`)), 'every key: prefix + {appId}')
  t.same([...slots], [slot], `all ${keys.length} keys in slot ${slot}`)
  t.equal(new Set(keys.map(({ node }) => node)).size, 1, 'all on one node')
  return keys.length
}

const T0 = Date.now()
let seq = 0
function rec (over: Partial<MessageRecord> = {}): MessageRecord {
  seq++
  const at = new Date(T0).toISOString()
  return { id: `m${seq}`, status: 'pending', templateId: 'tplA', toUser: 'oUser1', attempts: 0, createdAt: at, updatedAt: at, source: 'queue', ...over }
}

function suite (t: Test, backend: Backend): void {
  t.test('store: token, lock, force budget, push dedupe, records, stats, credits, templates', async (t) => {
    const client = backend.client()
    t.teardown(() => client.disconnect())
    await until('client ready', () => client.status === 'ready')
    const commands = recordCommands(client)
    const appId = 'wxstore0000000001'
    const prefix = uniquePrefix('cluster-store')
    const keys = keySpace(prefix, appId)
    const store = new RedisStore(client as Redis, keys, { now: () => Date.now() }, 2000)

    // token part
    const now = Date.now()
    t.equal(await store.getToken(), null)
    t.equal(await store.putTokenIfNewer({ token: 'T1', expiresAt: now + 60_000, fetchedAt: now }), true)
    t.equal(await store.putTokenIfNewer({ token: 'T0', expiresAt: now + 30_000, fetchedAt: now }), false, 'an older token never replaces a newer one')
    t.equal((await store.getToken())?.token, 'T1')
    t.equal(await store.dropToken('T0'), false)
    t.equal(await store.dropToken('T1'), true)
    t.equal(await store.acquireLock('a', 5000), true)
    t.equal(await store.acquireLock('b', 5000), false)
    await store.releaseLock('b')
    t.equal(await store.acquireLock('b', 5000), false, 'only the owner releases')
    await store.releaseLock('a')
    t.equal(await store.acquireLock('b', 5000), true)
    t.same(await store.takeForceRefresh(now), { allowed: true })
    t.same(await store.takeForceRefresh(now + 1000), { allowed: false, reason: 'spacing' })
    t.equal(await store.claimPush('k1', 60_000), 'claimed')
    await store.settlePush('k1', 60_000)
    t.equal(await store.claimPush('k1', 60_000), 'done')

    // records part: create (with idempotency and msgid), update, lookups, stats (MULTI), sent index (pipeline)
    const a = rec()
    t.equal((await store.createRecord(a, { ttlSeconds: 600, idempotencyKey: 'idem-1' })).created, true)
    t.same((await store.createRecord(rec(), { ttlSeconds: 600, idempotencyKey: 'idem-1' })).record.id, a.id, 'idempotency key answers the first record')
    t.equal((await store.updateRecord(a.id, { status: 'sending', attempts: 1 }, { ttlSeconds: 600, now: new Date().toISOString() }))?.status, 'sending')
    t.equal((await store.updateRecord(a.id, { status: 'sent', msgid: '3141592653589793238' }, { ttlSeconds: 600, now: new Date().toISOString() }))?.msgid, '3141592653589793238')
    t.equal(await store.findByMsgid('3141592653589793238'), a.id)
    const b = rec({ toUser: 'oUser2' })
    await store.createRecord(b, { ttlSeconds: 600 })
    await store.updateRecord(b.id, { status: 'sending' }, { ttlSeconds: 600, now: new Date().toISOString() })
    const sentAt = Date.now()
    await store.updateRecord(b.id, { status: 'sent' }, { ttlSeconds: 600, now: new Date(sentAt).toISOString() })
    t.equal(await store.findSentMatch('oUser2', 'tplA', sentAt, 10_000), b.id, 'the sent index (a pipeline) finds it')
    const c = rec({ toUser: 'oUser3' })
    await store.createRecord(c, { ttlSeconds: 600 })
    await store.updateRecord(c.id, { status: 'failed', errcode: 43101, errmsg: 'user refuse' }, { ttlSeconds: 600, now: new Date().toISOString() })
    const stats = await store.stats()
    t.match(stats, { total: 3, sent: 2, failed: 1, pending: 0, noConsent: 1, errcodes: { 43101: 1 }, byTemplate: { tplA: { sent: 2, failed: 1 } } })
    t.equal(stats.recentFailures[0].id, c.id)

    // credits and template cache
    t.equal(await store.addCredit('oUser1', 'tplA', 2), 2)
    t.same(await store.useCredit('oUser1', 'tplA', true), { ok: true, remaining: 1 })
    await store.refundCredit('oUser1', 'tplA')
    t.same(await store.getCredits('oUser1'), { tplA: 2 })
    await store.zeroCredit('oUser1', 'tplA')
    t.same(await store.useCredit('oUser1', 'tplA', true), { ok: false, remaining: 0 })
    await store.putTemplates({ fetchedAt: 1, templates: [] }, 60)
    t.same(await store.getTemplates(), { fetchedAt: 1, templates: [] })

    const multiKey = commands.filter((cmd) => cmd.keys.length > 1)
    t.ok(multiKey.some((cmd) => cmd.keys.length >= 8), 'scripts with 8+ keys were sent')
    for (const cmd of commands.filter((cmd) => cmd.keys.length > 0)) {
      if (!cmd.keys.every((key) => key.startsWith(`${prefix}{${appId}}:`))) t.fail(`${cmd.name} touches ${cmd.keys.join(', ')}`)
    }
    t.ok(commands.some((cmd) => cmd.name === 'multi' || cmd.name === 'exec'), 'stats() used MULTI')
    t.ok(await oneSlot(t, backend, prefix, appId) >= 10)
  })

  t.test('token: 3 instances × 100 concurrent sends → one fetch; invalidated → one refetch; force_refresh budget shared', async (t) => {
    const sim = await startSimulator(t)
    const keyPrefix = uniquePrefix('cluster-token')
    const plugin = { keyPrefix, queue: false, clock: sim.clock, timeout: 5000 }
    const apps = await Promise.all([0, 1, 2].map(() => appOn(t, sim, { client: backend.client(), closeClient: true }, plugin)))
    t.same(apps.map((app) => app.wechat.storeKind), ['redis', 'redis', 'redis'])
    const burst = async (): Promise<number> => {
      const results = await Promise.allSettled(apps.flatMap((app, k) => Array.from({ length: 100 }, (_, i) => app.wechat.send(numbered(`K${k}`, i)))))
      const errors = new Set(results.flatMap((r) => r.status === 'rejected' ? [`${r.reason.code} ${r.reason.errcode}: ${r.reason.message}`] : []))
      if (errors.size > 0) t.comment([...errors].slice(0, 3).join('; '))
      return results.filter((r) => r.status === 'fulfilled').length
    }
    t.equal(await burst(), 300)
    t.equal(sim.tokenFetches().stable_token, 1, 'one token fetch for the whole fleet')
    t.same(new Set(await Promise.all(apps.map((app) => app.wechat.getToken()))).size, 1, 'one shared token')

    sim.invalidateTokens()
    t.equal(await burst(), 300, 'every send succeeds after the token is invalidated')
    t.equal(sim.tokenFetches().stable_token, 2, 'one refetch for the whole fleet')

    // WeChat refuses a token stable_token still returns, twice: instance 0 spends one force_refresh; a
    // new instance that starts on that token and sees it refused 10 s later is held by the shared 30-s spacing.
    sim.failNext('send', { errcode: 40001 }, 2)
    await apps[0].wechat.send(numbered('F', 0))
    t.equal(sim.tokenFetches().force_refresh, 1)
    const late = await appOn(t, sim, { client: backend.client(), closeClient: true }, plugin)
    t.equal(await late.wechat.getToken(), await apps[0].wechat.getToken(), 'the new instance reads the shared token')
    sim.clock.advance(10_000)
    sim.failNext('send', { errcode: 40001 }, 2)
    await t.rejects(late.wechat.send(numbered('F', 1)), { code: 'FST_WECHAT_API', errcode: 40001 })
    t.equal(sim.tokenFetches().force_refresh, 1, 'the budget is fleet-wide')
    await oneSlot(t, backend, keyPrefix, sim.appId)
  })

  t.test('queue: 2 instances work 300 enqueued messages → each sent exactly once; records and stats agree', async (t) => {
    const sim = await startSimulator(t)
    const keyPrefix = uniquePrefix('cluster-queue')
    const plugin = { keyPrefix, queue: { concurrency: 8 }, timeout: 5000 }
    const [app, other] = await Promise.all([0, 1].map(() => appOn(t, sim, { client: backend.client(), closeClient: true }, plugin)))
    const messages = Array.from({ length: 300 }, (_, i) => numbered('Q', i))
    const results = (await Promise.all([
      app.wechat.enqueue(messages.slice(0, 100)),
      other.wechat.enqueue(messages.slice(100, 200)),
      ...messages.slice(200).map((m) => app.wechat.enqueue(m))
    ])).flat()
    t.equal(new Set(results.map((r) => r.id)).size, 300)
    await until('300 accepted', () => sim.accepted.length >= 300, 60_000)
    await until('stats: 300 sent', async () => (await app.wechat.stats()).sent === 300, 10_000)
    t.same(duplicates(sim.accepted), { byIdentity: 0, byMsgid: 0 }, 'no duplicates')
    const byIdentity = new Map(sim.accepted.map((m) => [identity(m), m.msgid]))
    const records = await Promise.all(results.map((r) => other.wechat.status(r.id)))
    t.equal(records.filter((r, i) => r?.status === 'sent' && r.msgid === byIdentity.get(messageIdentity(messages[i]))).length, 300, 'every record sent, with its msgid, read from the other instance')
    t.match(await other.wechat.stats(), { total: 300, sent: 300, pending: 0, sending: 0, failed: 0 })
    const keys = await backend.keys(keyPrefix)
    t.ok(keys.some(({ key }) => key.startsWith(`${keyPrefix}{${sim.appId}}:subscribe-send:`)), 'BullMQ keys under the prefix')
    await oneSlot(t, backend, keyPrefix, sim.appId)
  })
}

test('single Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  suite(t, singleBackend(redis.url))
})

test('Redis Cluster, 3 masters', async (t) => {
  const started = Date.now()
  const cluster = await startCluster({ masters: 3 })
  t.teardown(() => cluster.stop())
  t.comment(`cluster up in ${Date.now() - started} ms on ports ${cluster.nodes.map((n) => n.port).join(', ')}`)
  const backend = clusterBackend(cluster)
  suite(t, backend)

  t.test('selectStore takes a Cluster; the worker connection keeps BullMQ\'s maxRetriesPerRequest: null', async (t) => {
    const sim = await startSimulator(t)
    const client = backend.client()
    const app = await appOn(t, sim, { client, closeClient: true }, { keyPrefix: uniquePrefix('cluster-boot') })
    t.equal(app.wechat.storeKind, 'redis')
    t.ok(client instanceof Cluster)
    const [{ id }] = await app.wechat.enqueue(numbered('B', 0))
    await until('sent', async () => (await app.wechat.status(id))?.status === 'sent')
  })

  // WAIT has no key: on a Cluster it went to any master, which confirmed adds it never took (about 2
  // in 3 enqueues "confirmed" with no replica holding them). Refused at boot now. Failed before.
  // With scaleReads: 'slave' the plugin's reads went to replicas, behind its own writes (status() right
  // after a send, a receipt's msgid lookup, the token after the lock). Refused at boot. Failed before.
  t.test('a Cluster client reading from replicas (scaleReads) is refused at boot', async (t) => {
    const sim = await startSimulator(t)
    await t.rejects(appOn(t, sim, { client: cluster.client({ scaleReads: 'slave', redisOptions: { maxRetriesPerRequest: 1 } }), closeClient: true }, { keyPrefix: uniquePrefix('cluster-scale') }),
      { code: 'FST_WECHAT_OPTIONS', message: /reads from replicas \(scaleReads: 'slave'\)/ })
  })

  // Audit: BullMQ refused it with its own uncoded error naming neither option. Failed before.
  t.test('a Cluster client with ioredis\' keyPrefix (redisOptions) is refused at boot with a coded error naming the way out', async (t) => {
    const sim = await startSimulator(t)
    await t.rejects(appOn(t, sim, { client: cluster.client({ redisOptions: { keyPrefix: 'svc:', maxRetriesPerRequest: 1 } }), closeClient: true }, { keyPrefix: uniquePrefix('cluster-client-prefix') }),
      { code: 'FST_WECHAT_OPTIONS', message: /keyPrefix "svc:".*this plugin's keyPrefix option/ })
  })

  t.test('queue.replicas on a Cluster is refused at boot (WAIT cannot reach the jobs\' master)', async (t) => {
    const sim = await startSimulator(t)
    await t.rejects(appOn(t, sim, { client: backend.client(), closeClient: true }, { keyPrefix: uniquePrefix('cluster-replicas'), queue: { replicas: 1 } }),
      { code: 'FST_WECHAT_OPTIONS', message: /queue\.replicas needs a single Redis or Sentinel/ })
  })
})
