import { once } from 'node:events'
import { test } from 'tap'
import { Redis } from 'ioredis'
import type { Command } from 'ioredis'
import { keySpace } from '../lib/store/keys.js'
import { DEFERRED_WRITE_MS, MAX_WRITES_PER_CALL } from '../lib/store/record-writes.js'
import type { MessageRecord } from '../lib/store/records.js'
import { RedisStore } from '../lib/store/redis.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'

const APP_ID = 'wx0123456789abcdef'
const TTL = 3600
const NOW = '2026-03-01T00:00:00.000Z'

let seq = 0
function rec (over: Partial<MessageRecord> = {}): MessageRecord {
  seq++
  return { id: `w${seq}`, status: 'sent', templateId: 'tplA', toUser: 'oUser1', attempts: 1, msgid: String(2100000000000000000n + BigInt(seq)), createdAt: NOW, updatedAt: NOW, source: 'send', ...over }
}

test('record writes issued together go out as one script call', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  await once(client, 'ready')
  /** KEYS of every script call; `scripts` only those since a subtest reset it */
  const all: string[][] = []
  const scripts: string[][] = []
  const send = client.sendCommand.bind(client)
  client.sendCommand = (command: Command, stream?: never) => {
    if (command.name === 'evalsha' || command.name === 'eval') {
      scripts.push(command.getKeys().map(String))
      all.push(command.getKeys().map(String))
    }
    return send(command, stream)
  }
  const make = (): { store: RedisStore, keys: ReturnType<typeof keySpace> } => {
    const keys = keySpace(uniquePrefix('writes'), APP_ID)
    return { store: new RedisStore(client, keys, { now: () => Date.now() }, 2000), keys }
  }

  t.test('many creates: one call, each caller its own answer, counters exact', async (t) => {
    const { store } = make()
    const records = Array.from({ length: 50 }, (_, i) => rec({ status: i % 5 === 0 ? 'failed' : 'sent', errcode: i % 5 === 0 ? 43101 : undefined }))
    for (const r of records) if (r.errcode === undefined) delete r.errcode
    scripts.length = 0
    const results = await Promise.all(records.map((r) => store.createRecord(r, { ttlSeconds: TTL })))
    t.equal(scripts.length, 1, 'one script call')
    t.same(results, records.map((record) => ({ created: true, record })))
    const stats = await store.stats()
    t.same({ total: stats.total, sent: stats.sent, failed: stats.failed, noConsent: stats.noConsent, errcodes: stats.errcodes }, { total: 50, sent: 40, failed: 10, noConsent: 10, errcodes: { 43101: 10 } })
    t.same(stats.byTemplate.tplA, { pending: 0, sending: 0, sent: 40, delivered: 0, failed: 10, unknown: 0 })
    t.equal(stats.recentFailures.length, 10)
    t.equal(await store.findByMsgid(records[3]?.msgid as string), records[3]?.id)
  })

  t.test('a batch larger than the cap is split; writes to one record apply in order', async (t) => {
    const { store } = make()
    const n = MAX_WRITES_PER_CALL * 2 + 10
    const records = Array.from({ length: n }, () => rec({ status: 'pending', msgid: undefined }))
    for (const r of records) delete r.msgid
    scripts.length = 0
    const writes: Promise<unknown>[] = records.map((r) => store.createRecord(r, { ttlSeconds: TTL }))
    const first = records[0] as MessageRecord
    writes.push(store.updateRecord(first.id, { status: 'sending', attempts: 1 }, { ttlSeconds: TTL, now: NOW }))
    writes.push(store.updateRecord(first.id, { status: 'sent', msgid: '42' }, { ttlSeconds: TTL, now: NOW }))
    const answers = await Promise.all(writes)
    t.equal(scripts.length, 3, `${n + 2} writes in 3 calls`)
    t.match(answers.at(-2), { status: 'sending', attempts: 1 })
    t.match(answers.at(-1), { status: 'sent', attempts: 1, msgid: '42' })
    const stats = await store.stats()
    t.same({ total: stats.total, pending: stats.pending, sending: stats.sending, sent: stats.sent }, { total: n, pending: n - 1, sending: 0, sent: 1 })
  })

  t.test('deferred writes (nobody awaits them) wait a few ms to share one call', async (t) => {
    const { store } = make()
    scripts.length = 0
    const first = [rec(), rec()].map((r) => store.createRecord(r, { ttlSeconds: TTL, deferred: true }))
    await new Promise((resolve) => setImmediate(resolve))
    t.equal(scripts.length, 0, 'not sent at the end of the turn')
    const later = [rec(), rec(), rec()].map((r) => store.createRecord(r, { ttlSeconds: TTL, deferred: true }))
    const started = Date.now()
    await Promise.all([...first, ...later])
    t.equal(scripts.length, 1, 'five writes from two turns, one call')
    t.ok(Date.now() - started < DEFERRED_WRITE_MS + 1000, 'sent without anything else happening')
    t.equal((await store.stats()).total, 5)
  })

  t.test('a write someone awaits takes the deferred ones with it at once', async (t) => {
    const { store } = make()
    scripts.length = 0
    const deferred = rec()
    const write = store.createRecord(deferred, { ttlSeconds: TTL, deferred: true })
    await new Promise((resolve) => setImmediate(resolve))
    await store.createRecord(rec(), { ttlSeconds: TTL })
    t.equal(scripts.length, 1, 'both in the awaited write\'s call')
    t.same(await write, { created: true, record: deferred })
  })

  t.test('a read right after a deferred write sees it; close() sends deferred writes', async (t) => {
    const { store, keys } = make()
    const r = rec()
    const first = store.createRecord(r, { ttlSeconds: TTL, deferred: true })
    t.same(await store.getRecord(r.id), r, 'the read sent the write before itself')
    await first
    const last = rec()
    const write = store.createRecord(last, { ttlSeconds: TTL, deferred: true })
    await store.close()
    t.ok(await client.exists(keys.record(last.id)), 'written before close() resolved')
    t.same(await write, { created: true, record: last })
  })

  t.test('a key that holds no record reads as missing, never as a broken record', async (t) => {
    const { store, keys } = make()
    await client.set(keys.record('junk'), 'not json', 'EX', 60)
    await client.set(keys.record('other'), '{"some":"object"}', 'EX', 60)
    t.equal(await store.getRecord('junk'), null)
    t.equal(await store.getRecord('other'), null)
    t.equal(await store.discardRecord('junk'), false)
  })

  t.test('one write failing does not fail the others in its call', async (t) => {
    const { store, keys } = make()
    const broken = rec()
    await client.rpush(keys.record(broken.id), 'not a record') // a key of the wrong type
    const others = [rec(), rec()]
    scripts.length = 0
    const results = await Promise.allSettled([store.createRecord(others[0] as MessageRecord, { ttlSeconds: TTL }), store.createRecord(broken, { ttlSeconds: TTL }), store.createRecord(others[1] as MessageRecord, { ttlSeconds: TTL })])
    t.equal(scripts.length, 1)
    t.match(results, [{ status: 'fulfilled', value: { created: true } }, { status: 'rejected', reason: { message: /WRONGTYPE/ } }, { status: 'fulfilled', value: { created: true } }])
    t.equal((await store.stats()).total, 2, 'only the two written are counted')
    t.equal(await store.updateRecord(broken.id, { status: 'failed' }, { ttlSeconds: TTL, now: NOW }).catch((err: Error) => err.message.includes('WRONGTYPE')), true, 'an update fails the same way')
  })

  t.test('text with a lone surrogate is stored as U+FFFD, as UTF-8 arguments always stored it', async (t) => {
    const { store } = make()
    const r = rec({ status: 'failed', errcode: -1, errmsg: 'cut\ud83d' })
    t.same((await store.createRecord(r, { ttlSeconds: TTL })).record, r, 'answered as given')
    t.equal((await store.getRecord(r.id))?.errmsg, 'cut\ufffd')
    t.equal((await store.updateRecord(r.id, { status: 'failed', errmsg: '\udc00x 😀' }, { ttlSeconds: TTL, now: NOW }))?.errmsg, '\ufffdx 😀')
  })

  t.test('a read issued right after a write (not awaited) sees it', async (t) => {
    const { store } = make()
    const r = rec()
    const write = store.createRecord(r, { ttlSeconds: TTL })
    t.same(await store.getRecord(r.id), r, 'getRecord')
    t.equal((await store.stats()).total, 1, 'stats')
    const update = store.updateRecord(r.id, { status: 'delivered' }, { ttlSeconds: TTL, now: NOW })
    t.equal((await store.getRecord(r.id))?.status, 'delivered')
    await Promise.all([write, update])
  })

  t.test('close() sends what is queued and waits for it', async (t) => {
    const { store, keys } = make()
    const r = rec()
    const write = store.createRecord(r, { ttlSeconds: TTL })
    await store.close()
    t.equal(JSON.parse(await client.get(keys.record(r.id)) ?? '{}').status, 'sent', 'written before close() resolved')
    t.same(await write, { created: true, record: r })
  })

  t.test('Redis not answering fails every write of the call', async (t) => {
    const idle = new Redis(redis.url, { lazyConnect: true })
    const store = new RedisStore(idle, keySpace(uniquePrefix('writes'), APP_ID), { now: () => Date.now() }, 2000)
    const results = await Promise.allSettled([store.createRecord(rec(), { ttlSeconds: TTL }), store.updateRecord('x', { status: 'sent' }, { ttlSeconds: TTL, now: NOW })])
    t.match(results, [{ status: 'rejected', reason: { code: 'WECHAT_STORE_UNAVAILABLE' } }, { status: 'rejected', reason: { code: 'WECHAT_STORE_UNAVAILABLE' } }])
  })

  t.test('every key of a call is under the {appId} tag (one Cluster slot)', async (t) => {
    t.ok(all.length > 0)
    t.ok(all.every((keys) => keys.every((key) => key.includes(`{${APP_ID}}:`))), 'every KEY carries the tag')
    t.ok(all.some((keys) => keys.length > 100), 'batched calls carry many records\' keys')
  })
})
