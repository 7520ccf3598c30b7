import { once } from 'node:events'
import { test } from 'tap'
import type { Test } from 'tap'
import { Redis } from 'ioredis'
import type { Command } from 'ioredis'
import { keySpace } from '../lib/store/keys.js'
import type { KeySpace } from '../lib/store/keys.js'
import { MemoryStore } from '../lib/store/memory.js'
import { RedisStore } from '../lib/store/redis.js'
import { RedisRecords } from '../lib/store/records-redis.js'
import { canTransition, RECENT_FAILURES_CAP, SENT_INDEX_CAP, STATUSES, TRANSITIONS } from '../lib/store/records.js'
import type { MessageRecord, RecentFailure, RecordPatch, Status, StatusCounts } from '../lib/store/records.js'
import type { WechatStore } from '../lib/store/types.js'
import { startRedis, uniquePrefix } from './helpers/redis-server.js'

const APP_ID = 'wx0123456789abcdef'
const T0 = Date.parse('2024-05-01T00:00:00.000Z')
const iso = (ms: number): string => new Date(ms).toISOString()
const TTL = 3600

interface Harness {
  store: WechatStore
  /** the store's clock */
  now (): number
  /** let `ttlSeconds` pass (memory: the fake clock; Redis: real time) */
  expire (ttlSeconds: number): Promise<void>
}
type Factory = () => Harness

let seq = 0
function rec (over: Partial<MessageRecord> = {}): MessageRecord {
  seq++
  return { id: `m${seq}`, status: 'pending', templateId: 'tplA', toUser: 'oUser1', attempts: 0, createdAt: iso(T0), updatedAt: iso(T0), source: 'queue', ...over }
}
const at = (i: number) => ({ ttlSeconds: TTL, now: iso(T0 + i * 1000) })

/** Deterministic PRNG (mulberry32) so the random walk is the same on both stores. */
function prng (seed: number): () => number {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const counts = (over: Partial<StatusCounts> = {}): StatusCounts => ({ pending: 0, sending: 0, sent: 0, delivered: 0, failed: 0, unknown: 0, ...over })

/** The suite both stores must pass, identically. */
function suite (t: Test, make: Factory): void {
  t.test('create, get, update fields', async (t) => {
    const { store } = make()
    t.same(await store.stats(), { ...counts(), total: 0, noConsent: 0, byTemplate: {}, errcodes: {}, recentFailures: [] })
    const r = rec({ errcode: -1, errmsg: 'busy' })
    t.same(await store.createRecord({ ...r, extra: 'dropped' } as MessageRecord, { ttlSeconds: TTL }), { created: true, record: r })
    t.same(await store.getRecord(r.id), r)
    t.equal(await store.getRecord('nope'), null)
    t.equal(await store.updateRecord('nope', { status: 'sent' }, at(1)), null)
    t.same(await store.createRecord({ ...r, templateId: 'other' }, { ttlSeconds: TTL }), { created: false, record: r }, 'same id: the first record')

    const same = await store.updateRecord(r.id, { attempts: 2, errcode: 45011, errmsg: 'rate' }, at(1))
    t.same(same, { ...r, attempts: 2, errcode: 45011, errmsg: 'rate', updatedAt: iso(T0 + 1000) }, 'a patch without status updates fields')
    const cleared = await store.updateRecord(r.id, { status: 'sending', errcode: null, errmsg: null }, at(2))
    const { errcode, errmsg, ...bare } = r
    t.same([errcode, errmsg], [-1, 'busy'])
    t.same(cleared, { ...bare, status: 'sending', attempts: 2, updatedAt: iso(T0 + 2000) }, 'null clears errcode and errmsg')
    t.same(await store.getRecord(r.id), cleared)
    const nullStatus = await store.updateRecord(r.id, { status: null as unknown as Status, attempts: 2 }, at(2))
    t.same(nullStatus, cleared, 'a null status keeps the current one')
    const sent = await store.updateRecord(r.id, { status: 'sent', msgid: '3141592653589793238', attempts: 3 }, at(3))
    t.equal(sent?.msgid, '3141592653589793238', 'msgid stays a string')
    t.equal(await store.findByMsgid('3141592653589793238'), r.id)
    t.equal(await store.findByMsgid('42'), null)

    const withMsgid = rec({ status: 'sent', msgid: '99' })
    await store.createRecord(withMsgid, { ttlSeconds: TTL })
    t.equal(await store.findByMsgid('99'), withMsgid.id, 'a record created with a msgid is indexed')
    const s = await store.stats()
    t.equal(s.total, 2)
    t.same(s.byTemplate, { tplA: counts({ sent: 2 }) })
  })

  // A template id '__proto__' reached stats() as `templates['__proto__'][status] = n`: on the Redis
  // store that wrote onto Object.prototype (every object in the process then had `failed`, and route
  // validation refused every request); on the memory store its counts vanished. Failed before.
  t.test('a template id such as __proto__ is an ordinary key in stats()', async (t) => {
    const { store } = make()
    for (const templateId of ['__proto__', 'constructor', 'toString']) {
      await store.createRecord(rec({ templateId, status: 'failed', errcode: 40003, errmsg: 'x' }), { ttlSeconds: TTL })
    }
    const stats = await store.stats()
    t.equal(({} as Record<string, unknown>).failed, undefined, 'Object.prototype untouched')
    t.same(Object.keys(stats.byTemplate).sort(), ['__proto__', 'constructor', 'toString'])
    t.same(Object.getOwnPropertyDescriptor(stats.byTemplate, '__proto__')?.value, counts({ failed: 1 }))
    t.same(stats.byTemplate.constructor, counts({ failed: 1 }))
    t.equal(Object.getPrototypeOf(stats.byTemplate), Object.prototype)
  })

  t.test('the transition table: every pair, both stores', async (t) => {
    const { store } = make()
    t.same(TRANSITIONS, {
      pending: ['sending', 'sent', 'failed', 'unknown'],
      sending: ['pending', 'sent', 'failed', 'unknown'],
      sent: ['delivered', 'failed'],
      delivered: [],
      failed: ['delivered'],
      unknown: ['delivered', 'failed']
    })
    const model: Record<Status, number> = counts()
    for (const from of STATUSES) {
      for (const to of STATUSES) {
        const r = rec({ status: from })
        await store.createRecord(r, { ttlSeconds: TTL })
        const allowed = from === to || TRANSITIONS[from].includes(to)
        const after = await store.updateRecord(r.id, { status: to, attempts: 7 }, at(1))
        if (allowed) {
          t.same(after, { ...r, status: to, attempts: 7, updatedAt: iso(T0 + 1000) }, `${from} → ${to} allowed`)
          model[to]++
        } else {
          t.same(after, r, `${from} → ${to} refused, record unchanged`)
          t.same(await store.getRecord(r.id), r)
          model[from]++
        }
      }
    }
    t.notOk(canTransition('delivered', 'sent'), 'delivered never goes back to sent')
    t.ok(canTransition('failed', 'delivered'))
    t.notOk(canTransition('bogus' as Status, 'sent'))
    const s = await store.stats()
    t.same({ ...counts(), ...pick(s, STATUSES) }, model)
    t.equal(s.total, 36)
  })

  t.test('counters agree with a model after 1,000 random transitions', async (t) => {
    const { store } = make()
    const random = prng(7)
    const choose = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]
    const templates = ['tplA', 'tplB', 'tplC']
    const codes = [undefined, -1, 43101, 45009, 40003]
    const state = new Map<string, MessageRecord>()
    const status = counts()
    const byTemplate: Record<string, StatusCounts> = {}
    const errcodes: Record<string, number> = {}
    let recent: RecentFailure[] = []
    let noConsent = 0
    for (let i = 0; i < 40; i++) {
      const r = rec({ templateId: choose(templates), status: choose(['pending', 'sending'] as const) })
      await store.createRecord(r, { ttlSeconds: TTL })
      state.set(r.id, r)
      status[r.status]++
      byTemplate[r.templateId] ??= counts()
      byTemplate[r.templateId][r.status]++
    }
    const ids = [...state.keys()]
    for (let i = 1; i <= 1000; i++) {
      const id = choose(ids)
      const old = state.get(id) as MessageRecord
      const patch: RecordPatch = { status: choose(STATUSES), attempts: old.attempts + 1 }
      const code = choose(codes)
      if (code !== undefined) Object.assign(patch, { errcode: code, errmsg: `e${code}` })
      const now = iso(T0 + i * 1000)
      const got = await store.updateRecord(id, patch, at(i))
      if (!canTransition(old.status, patch.status as Status)) {
        t.same(got, old)
        continue
      }
      const next: MessageRecord = { ...old, ...patch, updatedAt: now } as MessageRecord
      state.set(id, next)
      if (next.status !== old.status) {
        status[old.status]--
        status[next.status]++
        byTemplate[old.templateId][old.status]--
        byTemplate[old.templateId][next.status]++
        if (next.status === 'failed' || next.status === 'unknown') {
          const entry: RecentFailure = { id, templateId: old.templateId, at: now }
          if (next.errcode !== undefined) {
            entry.errcode = next.errcode
            entry.errmsg = next.errmsg
            if (code !== undefined || (old.status !== 'failed' && old.status !== 'unknown')) {
              errcodes[next.errcode] = (errcodes[next.errcode] ?? 0) + 1
            }
            // counted once the message ends failed, not while it is unknown
            if (next.errcode === 43101 && next.status === 'failed') noConsent++
          }
          recent = [entry, ...recent].slice(0, RECENT_FAILURES_CAP)
        }
      }
      if (i % 250 === 0) t.same(got, next)
    }
    const s = await store.stats()
    t.same(pick(s, STATUSES), status, 'per status')
    t.same(s.byTemplate, byTemplate, 'per template')
    t.same(s.errcodes, errcodes, 'errcode histogram')
    t.equal(s.noConsent, noConsent, 'noConsent')
    t.same(s.recentFailures, recent, 'recent failures, newest first')
    t.equal(s.total, 40)
    for (const id of ids.slice(0, 5)) t.same(await store.getRecord(id), state.get(id))
  })

  t.test('failures: histogram, noConsent, recent list capped at 50', async (t) => {
    const { store } = make()
    const a = rec({ status: 'sending' })
    await store.createRecord(a, { ttlSeconds: TTL })
    await store.updateRecord(a.id, { status: 'unknown', errcode: 43101, errmsg: 'no consent' }, at(1))
    t.equal((await store.stats()).noConsent, 0, "an 'unknown' 43101 is not counted: the message may have been delivered")
    await store.updateRecord(a.id, { status: 'failed' }, at(2))
    let s = await store.stats()
    t.same(s.errcodes, { 43101: 1 }, 'unknown → failed without a new errcode does not count it twice')
    t.equal(s.noConsent, 1)
    t.same(s.recentFailures.map((f) => f.id), [a.id, a.id])
    const b = rec({ status: 'sending' })
    await store.createRecord(b, { ttlSeconds: TTL })
    await store.updateRecord(b.id, { status: 'failed' }, at(3))
    t.same((await store.stats()).recentFailures[0], { id: b.id, templateId: 'tplA', at: iso(T0 + 3000) }, 'a failure without errcode is listed')
    const created = rec({ status: 'failed', errcode: 40003, errmsg: 'bad openid' })
    await store.createRecord(created, { ttlSeconds: TTL })
    for (let i = 0; i < 60; i++) {
      const r = rec({ status: 'sending', templateId: 'tplB' })
      await store.createRecord(r, { ttlSeconds: TTL })
      await store.updateRecord(r.id, { status: 'failed', errcode: -1, errmsg: '系统繁忙' }, at(10 + i))
    }
    s = await store.stats()
    t.equal(s.recentFailures.length, 50)
    t.same(s.recentFailures[0], { id: `m${seq}`, templateId: 'tplB', errcode: -1, errmsg: '系统繁忙', at: iso(T0 + 69_000) })
    t.same(s.errcodes, { 43101: 1, 40003: 1, '-1': 60 })
    t.same(s.byTemplate.tplB, counts({ failed: 60 }))
    t.same(s.byTemplate.tplA, counts({ failed: 3 }))
  })

  t.test('idempotency', async (t) => {
    const { store } = make()
    const first = rec()
    t.same(await store.createRecord(first, { ttlSeconds: TTL, idempotencyKey: 'order-1' }), { created: true, record: { ...first, idempotencyKey: 'order-1' } })
    await store.updateRecord(first.id, { status: 'sending' }, at(1))
    const again = await store.createRecord(rec(), { ttlSeconds: TTL, idempotencyKey: 'order-1' })
    t.same(again, { created: false, record: { ...first, idempotencyKey: 'order-1', status: 'sending', updatedAt: iso(T0 + 1000) } }, 'the first record, as it is now')
    const results = await Promise.all(Array.from({ length: 50 }, () => store.createRecord(rec(), { ttlSeconds: TTL, idempotencyKey: 'order-2' })))
    const created = results.filter((r) => r.created)
    t.equal(created.length, 1, 'exactly one of 50 concurrent creates')
    t.same(new Set(results.map((r) => r.record.id)), new Set([created[0].record.id]))
    const s = await store.stats()
    t.equal(s.total, 2)
    t.same(s.byTemplate, { tplA: counts({ pending: 1, sending: 1 }) })
  })

  t.test('findSentMatch', async (t) => {
    const { store } = make()
    const ids: string[] = []
    for (const offset of [0, 10, 20]) {
      const r = rec({ toUser: 'oPair' })
      await store.createRecord(r, { ttlSeconds: TTL })
      await store.updateRecord(r.id, { status: 'sent' }, at(offset))
      ids.push(r.id)
    }
    const other = rec({ toUser: 'oPair', templateId: 'tplZ' })
    await store.createRecord(other, { ttlSeconds: TTL })
    await store.updateRecord(other.id, { status: 'sent' }, at(11))
    const find = (aroundS: number, windowS: number, user = 'oPair') => store.findSentMatch(user, 'tplA', T0 + aroundS * 1000, windowS * 1000)
    t.equal(await find(12, 5), ids[1], 'the closest in the window')
    t.equal(await find(15, 5), ids[1], 'a tie goes to the earlier')
    t.equal(await find(10, 0), ids[1], 'the window is inclusive')
    t.equal(await find(14.5, 4), null, 'nothing within the window')
    t.equal(await find(12, 5, 'oNobody'), null)
    t.equal(await store.findSentMatch('oPair', 'tplZ', T0 + 12_000, 5000), other.id, 'pairs are separate')
    await store.updateRecord(ids[1], { status: 'delivered' }, at(30))
    t.equal(await find(12, 10), ids[2], 'a delivered message is no longer a candidate')
    await store.updateRecord(ids[2], { status: 'failed' }, at(31))
    t.equal(await find(12, 12), ids[0], 'nor a failed one')
    const early = rec({ toUser: 'oPair', status: 'sent', updatedAt: iso(T0 - 5000) })
    await store.createRecord(early, { ttlSeconds: TTL })
    t.equal(await find(-4, 2), early.id, 'created as sent: indexed at updatedAt')
    t.equal(await find(0, 1e12), ids[0], 'a window reaching before 1970')
    const odd = rec({ toUser: 'oAmb', templateId: 'x|tplA' })
    await store.createRecord(odd, { ttlSeconds: TTL })
    await store.updateRecord(odd.id, { status: 'sent' }, at(0))
    t.equal(await store.findSentMatch('oAmb|x', 'tplA', T0, 1000), null, 'a separator inside ids does not mix pairs')
    t.equal(await store.findSentMatch('oAmb', 'x|tplA', T0, 1000), odd.id)

    const many: string[] = []
    for (let i = 0; i < SENT_INDEX_CAP + 5; i++) {
      const r = rec({ toUser: 'oBusy' })
      await store.createRecord(r, { ttlSeconds: TTL })
      await store.updateRecord(r.id, { status: 'sent' }, at(100 + i))
      many.push(r.id)
    }
    t.equal(await find(104, 0, 'oBusy'), null, 'only the newest 100 per pair are kept')
    t.equal(await find(105, 0, 'oBusy'), many[5])
    t.equal(await find(204, 0, 'oBusy'), many[104])
  })

  t.test('an unparsable time falls back to the clock', async (t) => {
    const { store, now } = make()
    const r = rec({ toUser: 'oClock' })
    await store.createRecord(r, { ttlSeconds: TTL })
    const before = now()
    await store.updateRecord(r.id, { status: 'sent' }, { ttlSeconds: TTL, now: 'not a time' })
    t.equal(await store.findSentMatch('oClock', 'tplA', before, 60_000), r.id)
  })

  t.test('token part: token, lock, force_refresh budget, push dedupe', async (t) => {
    const { store, now, expire } = make()
    const t0 = now()
    t.equal(await store.getToken(), null)
    const a = { token: 'A', expiresAt: t0 + 7_200_000, fetchedAt: t0 }
    t.equal(await store.putTokenIfNewer(a), true)
    t.same(await store.getToken(), a)
    t.equal(await store.putTokenIfNewer({ ...a, token: 'old', expiresAt: t0 + 60_000 }), false, 'an older token never replaces a newer one')
    const b = { ...a, token: 'B', expiresAt: t0 + 7_300_000 }
    t.equal(await store.putTokenIfNewer(b), true)
    t.equal(await store.dropToken('A'), false, 'a rejected old token does not take the new one down')
    t.equal(await store.dropToken('B'), true)
    t.equal(await store.getToken(), null)

    t.equal(await store.acquireLock('one', 5000), true)
    t.equal(await store.acquireLock('two', 5000), false)
    await store.releaseLock('two')
    t.equal(await store.acquireLock('two', 5000), false, 'only the owner releases')
    await store.releaseLock('one')
    t.equal(await store.acquireLock('two', 5000), true)

    const day = Date.parse('2024-05-01T00:00:00+08:00')
    t.same(await store.takeForceRefresh(day), { allowed: true })
    t.same(await store.takeForceRefresh(day + 1000), { allowed: false, reason: 'spacing' })
    for (let i = 1; i < 20; i++) t.same(await store.takeForceRefresh(day + i * 30_000), { allowed: true })
    t.same(await store.takeForceRefresh(day + 3_600_000), { allowed: false, reason: 'daily' })
    t.same(await store.takeForceRefresh(day + 86_400_000), { allowed: true }, 'a new China day')

    // A claim is 'pending' to other attempts until settled: 'done' for its window, or dropped.
    t.equal(await store.claimPush('msg-1', 60_000), 'claimed')
    t.equal(await store.claimPush('msg-1', 60_000), 'pending')
    t.equal(await store.claimPush('msg-2', 60_000), 'claimed')
    await store.settlePush('msg-1', 60_000)
    t.equal(await store.claimPush('msg-1', 60_000), 'done')
    await store.settlePush('msg-2', null)
    t.equal(await store.claimPush('msg-2', 60_000), 'claimed', 'a dropped claim can be taken again')

    // Only its owner drops a claim: an attempt whose claim expired while it worked, and which then
    // failed, must not drop the claim another attempt took meanwhile (a third would apply the push too).
    t.equal(await store.claimPush('msg-3', 1000, 'attempt-A'), 'claimed')
    await expire(1)
    t.equal(await store.claimPush('msg-3', 60_000, 'attempt-B'), 'claimed', 'an expired claim is taken over')
    await store.settlePush('msg-3', null, 'attempt-A')
    t.equal(await store.claimPush('msg-3', 60_000, 'attempt-C'), 'pending', "the late attempt did not drop the other's claim")
    await store.settlePush('msg-3', null, 'attempt-B')
    t.equal(await store.claimPush('msg-3', 60_000, 'attempt-C'), 'claimed', 'the owner dropped it')
    await store.close()
  })

  t.test('TTL: records, indexes and mappings expire, counters stay', async (t) => {
    const { store, expire } = make()
    const r = rec({ toUser: 'oTtl' })
    await store.createRecord(r, { ttlSeconds: 1, idempotencyKey: 'ttl-key' })
    // Without a msgid a receipt is matched by (user, template, time); with one, by msgid only.
    await store.updateRecord(r.id, { status: 'sent' }, { ttlSeconds: 1, now: iso(T0) })
    const withMsgid = rec({ toUser: 'oTtl' })
    await store.createRecord(withMsgid, { ttlSeconds: 1 })
    await store.updateRecord(withMsgid.id, { status: 'sent', msgid: '777' }, { ttlSeconds: 1, now: iso(T0 + 5000) })
    t.equal(await store.findByMsgid('777'), withMsgid.id)
    await store.putTemplates({ fetchedAt: T0, templates: [] }, 1)
    const keep = rec()
    await store.createRecord(keep, { ttlSeconds: TTL })
    t.equal(await store.findSentMatch('oTtl', 'tplA', T0, 1000), r.id)
    await expire(1)
    t.equal(await store.getRecord(r.id), null)
    t.equal(await store.updateRecord(r.id, { status: 'delivered' }, at(5)), null)
    t.equal(await store.findByMsgid('777'), null)
    t.equal(await store.findSentMatch('oTtl', 'tplA', T0, 1000), null)
    t.equal(await store.getTemplates(), null)
    t.same(await store.getRecord(keep.id), keep)
    const second = await store.createRecord(rec(), { ttlSeconds: TTL, idempotencyKey: 'ttl-key' })
    t.equal(second.created, true, 'the idempotency key expired with its record')
    const s = await store.stats()
    t.equal(s.total, 4)
    t.equal(s.sent, 2, 'counters are not recomputed when records expire')
  })

  t.test('discardRecord undoes a pending record, its idempotency key and its counts', async (t) => {
    const { store } = make()
    const r = rec({ templateId: 'tplD' })
    await store.createRecord(r, { ttlSeconds: TTL, idempotencyKey: 'discard-key' })
    t.equal(await store.discardRecord(r.id), true)
    t.equal(await store.getRecord(r.id), null)
    t.equal(await store.discardRecord(r.id), false, 'already gone')
    const s = await store.stats()
    t.equal(s.total, 0)
    t.equal(s.pending, 0)
    t.same(s.byTemplate.tplD ?? counts(), counts())
    const again = await store.createRecord(rec(), { ttlSeconds: TTL, idempotencyKey: 'discard-key' })
    t.equal(again.created, true, 'the key is free again')
    await store.updateRecord(again.record.id, { status: 'sent' }, at(1))
    t.equal(await store.discardRecord(again.record.id), false, 'only a pending record can be discarded')
    t.equal((await store.getRecord(again.record.id))?.status, 'sent')
  })

  t.test('credits', async (t) => {
    const { store } = make()
    t.same(await store.getCredits('oC'), {})
    t.same(await store.useCredit('oC', 'tplA', false), { ok: true, remaining: 0 }, 'tracking: never refused')
    t.same(await store.getCredits('oC'), {}, 'nothing written for a user without credits')
    t.equal(await store.addCredit('oC', 'tplA', 2), 2)
    t.equal(await store.addCredit('oC', 'tplA', 1), 3)
    t.same(await store.useCredit('oC', 'tplA', true), { ok: true, remaining: 2 })
    t.same(await store.useCredit('oC', 'tplA', false), { ok: true, remaining: 1 })
    t.same(await store.useCredit('oC', 'tplA', true), { ok: true, remaining: 0 })
    t.same(await store.useCredit('oC', 'tplA', true), { ok: false, remaining: 0 }, 'enforce at 0 refuses')
    t.same(await store.useCredit('oC', 'tplA', false), { ok: true, remaining: 0 }, 'track at 0 stays at 0')
    await store.refundCredit('oC', 'tplA')
    t.equal(await store.addCredit('oC', 'tplB', 5), 5)
    t.same(await store.getCredits('oC'), { tplA: 1, tplB: 5 })
    await store.zeroCredit('oC', 'tplB')
    t.same(await store.getCredits('oC'), { tplA: 1, tplB: 0 })
    await t.rejects(store.addCredit('oC', 'tplA', 0), RangeError)
    await t.rejects(store.addCredit('oC', 'tplA', 1.5), RangeError)
    // One popup's accepts in one write; a bad count refuses the whole batch.
    await store.addCredits('oC', new Map([['tplA', 2], ['tplC', 1]]))
    await store.addCredits('oC', new Map())
    await t.rejects(store.addCredits('oC', new Map([['tplD', 1], ['tplA', 0]])), RangeError)
    t.same(await store.getCredits('oC'), { tplA: 3, tplB: 0, tplC: 1 })
    // `once`: a push's accepts are added once, however often its write is repeated (a late write
    // and WeChat's retry); another push's are added.
    await store.addCredits('oOnce', new Map([['tplA', 1], ['tplB', 2]]), { key: 'push-1', ttlMs: 60_000 })
    await store.addCredits('oOnce', new Map([['tplA', 1], ['tplB', 2]]), { key: 'push-1', ttlMs: 60_000 })
    t.same(await store.getCredits('oOnce'), { tplA: 1, tplB: 2 }, 'the same push twice: added once')
    await store.addCredits('oOnce', new Map([['tplA', 1]]), { key: 'push-2', ttlMs: 60_000 })
    t.same(await store.getCredits('oOnce'), { tplA: 2, tplB: 2 }, 'another push: added')
    await store.addCredits('oOnce', new Map([['tplA', 1]]), { key: 'push-3', ttlMs: 1 })
    await new Promise((resolve) => setTimeout(resolve, 20))
    await store.addCredits('oOnce', new Map([['tplA', 1]]), { key: 'push-3', ttlMs: 1 })
    t.same(await store.getCredits('oOnce'), { tplA: 4, tplB: 2 }, 'remembered for its ttl only')

    await store.addCredit('oRace', 'tplA', 10)
    const results = await Promise.all(Array.from({ length: 100 }, () => store.useCredit('oRace', 'tplA', true)))
    t.equal(results.filter((r) => r.ok).length, 10, '100 concurrent enforced uses of 10 credits: exactly 10')
    t.same(await store.getCredits('oRace'), { tplA: 0 })
  })

  t.test('template cache', async (t) => {
    const { store } = make()
    t.equal(await store.getTemplates(), null)
    const value = { fetchedAt: T0, templates: [{ priTmplId: 'x', title: '订单发货', content: '{{thing1.DATA}}' }] }
    await store.putTemplates(value, 60)
    t.same(await store.getTemplates(), value)
    const copy = await store.getTemplates()
    copy?.templates.push('mutated')
    t.same(await store.getTemplates(), value, 'callers get a copy')
    await store.putTemplates({ fetchedAt: T0 + 1, templates: [] }, 60)
    t.same(await store.getTemplates(), { fetchedAt: T0 + 1, templates: [] })
  })
}

function pick<T extends object, K extends keyof T> (value: T, keys: readonly K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((k) => [k, value[k]])) as Pick<T, K>
}

test('memory store', async (t) => {
  const make = (): Harness & { clock: { t: number, now (): number } } => {
    const clock = { t: T0, now () { return this.t } }
    return { store: new MemoryStore(clock), clock, now: () => clock.t, expire: async (s) => { clock.t += s * 1000 + 1 } }
  }
  suite(t, make)

  t.test('push dedupe keys expire and are swept past 10,000', async (t) => {
    const { store, clock } = make()
    for (let i = 0; i <= 10_001; i++) await store.claimPush(`k${i}`, 1000)
    await store.putTokenIfNewer({ token: 'T', expiresAt: clock.t + 1000, fetchedAt: clock.t })
    clock.t += 1001
    t.equal(await store.getToken(), null, 'an expired token is gone')
    t.equal(await store.claimPush('k0', 1000), 'claimed', 'seen again after its window')
  })

  t.test('bounded: the least recently written finished records are evicted first', async (t) => {
    const clock = { t: T0, now () { return this.t } }
    const store = new MemoryStore(clock, { maxRecords: 10 })
    const first = rec()
    await store.createRecord(first, { ttlSeconds: TTL, idempotencyKey: 'evicted' })
    await store.updateRecord(first.id, { status: 'failed', errcode: 40003 }, at(0))
    const ids = [first.id]
    for (let i = 0; i < 9; i++) {
      const r = rec({ toUser: `o${i}` })
      await store.createRecord(r, { ttlSeconds: i < 3 ? 1 : TTL, idempotencyKey: `k${i}` })
      await store.updateRecord(r.id, { status: 'sent', msgid: `id${i}` }, at(i))
      ids.push(r.id)
    }
    clock.t += 2000 // three records and their mappings expired
    await store.updateRecord(ids[5], { attempts: 1 }, at(20)) // written again: now among the newest
    for (let i = 0; i < 7; i++) await store.createRecord(rec({ toUser: `n${i}`, status: 'sent' }), { ttlSeconds: TTL })
    t.equal(await store.getRecord(first.id), null, 'evicted')
    t.equal(await store.getRecord(ids[4]), null, 'evicted')
    t.equal(await store.getRecord(ids[7]), null, 'evicted')
    t.ok(await store.getRecord(ids[5]), 'kept: written recently')
    t.ok(await store.getRecord(ids[8]), 'kept')
    await store.createRecord(rec(), { ttlSeconds: TTL, idempotencyKey: 'k9' })
    const next = await store.createRecord(rec(), { ttlSeconds: TTL, idempotencyKey: 'evicted' })
    t.equal(next.created, true, 'a mapping to an evicted record does not block a new one')
    t.equal((await store.stats()).total, 19, 'counters are kept')
  })

  t.test('bounded: the idempotency key of a message still on its way is never evicted', async (t) => {
    // Past the cap, a repeat of an early key while its message still waited made a second message.
    const clock = { t: T0, now () { return this.t } }
    const store = new MemoryStore(clock, { maxRecords: 10 })
    const waiting = Array.from({ length: 25 }, () => rec())
    for (const [i, r] of waiting.entries()) await store.createRecord(r, { ttlSeconds: TTL, idempotencyKey: `key${i}` })
    for (const [i, r] of waiting.entries()) {
      const again = await store.createRecord(rec(), { ttlSeconds: TTL, idempotencyKey: `key${i}` })
      t.same([again.created, again.record.id], [false, r.id], `key${i} still answers its first message`)
    }
    // Finished, their keys become evictable again (least recently written first).
    for (const [i, r] of waiting.entries()) await store.updateRecord(r.id, { status: 'sent', msgid: `m${i}` }, at(i))
    for (let i = 0; i < 12; i++) await store.createRecord(rec({ status: 'sent' }), { ttlSeconds: TTL, idempotencyKey: `new${i}` })
    const first = await store.createRecord(rec(), { ttlSeconds: TTL, idempotencyKey: 'key0' })
    t.equal(first.created, true, 'a finished, evicted message\'s key can be used again')
  })

  t.test('bounded: a msgid leads to its record while the record lives, and goes with it', async (t) => {
    const clock = { t: T0, now () { return this.t } }
    const store = new MemoryStore(clock, { maxRecords: 10 })
    const records = Array.from({ length: 40 }, (_, i) => rec({ status: 'sent', msgid: `mid${i}` }))
    for (const r of records) await store.createRecord(r, { ttlSeconds: TTL })
    t.equal(await store.findByMsgid('mid0'), null, 'an evicted record\'s msgid leads nowhere')
    t.equal(await store.findByMsgid('mid39'), (records[39] as MessageRecord).id, 'a kept record is found by its msgid')
    // a record that learns a second msgid is found by both while it lives (the Redis store keeps both keys too)
    const twice = rec()
    await store.createRecord(twice, { ttlSeconds: 1 })
    await store.updateRecord(twice.id, { status: 'sending', msgid: 'first' }, at(0))
    await store.updateRecord(twice.id, { status: 'sent', msgid: 'second' }, { ttlSeconds: 1, now: iso(T0) })
    t.same([await store.findByMsgid('first'), await store.findByMsgid('second')], [twice.id, twice.id])
    clock.t += 1001
    t.same([await store.findByMsgid('first'), await store.findByMsgid('second')], [null, null], 'expired with its record')
    // Every write past the cap left a msgid mapping behind before (their own expiry, 7 days): the
    // mappings must not outnumber the records they lead to.
    for (let i = 0; i < 200; i++) await store.createRecord(rec({ status: 'sent', msgid: `more${i}` }), { ttlSeconds: TTL })
    const mappings = (store as unknown as { records: { msgids: Map<string, string> } }).records.msgids
    t.ok(mappings.size <= 12, `msgid mappings bounded with the records (${mappings.size})`)
  })

  t.test('bounded: records of messages still on their way are never evicted, however many', async (t) => {
    // An in-process queue with more messages waiting than the cap: before, their pending records
    // were evicted, the runner wrote them again and the stats counted each twice, one stuck pending.
    const clock = { t: T0, now () { return this.t } }
    const store = new MemoryStore(clock, { maxRecords: 10 })
    const waiting = Array.from({ length: 25 }, () => rec())
    for (const r of waiting) await store.createRecord(r, { ttlSeconds: TTL })
    for (const [i, r] of waiting.entries()) {
      t.ok(await store.getRecord(r.id), `record ${i} still there while waiting`)
      await store.updateRecord(r.id, { status: 'sending', attempts: 1 }, at(i))
      const sent = await store.updateRecord(r.id, { status: 'sent', msgid: `mid${i}` }, at(i))
      t.equal(sent?.status, 'sent', `record ${i} updated, not written anew`)
    }
    const stats = await store.stats()
    t.same({ total: stats.total, pending: stats.pending, sending: stats.sending, sent: stats.sent }, { total: 25, pending: 0, sending: 0, sent: 25 })
    t.ok(await store.getRecord((waiting[24] as MessageRecord).id), 'the latest finished are kept')
    t.equal(await store.getRecord((waiting[0] as MessageRecord).id), null, 'the oldest finished are evicted past the cap')
  })
})

test('redis store', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const client = new Redis(redis.url)
  t.teardown(() => client.quit())
  await once(client, 'ready')
  const commands: { name: string, keys: string[] }[] = []
  const send = client.sendCommand.bind(client)
  client.sendCommand = (command: Command, stream?: never) => {
    commands.push({ name: command.name, keys: command.getKeys().map(String) })
    return send(command, stream)
  }
  const prefixes: string[] = []
  const make = (): Harness & { keys: KeySpace, store: RedisStore } => {
    const prefix = uniquePrefix('records')
    prefixes.push(prefix)
    const keys = keySpace(prefix, APP_ID)
    return { store: new RedisStore(client, keys, { now: () => Date.now() }, 2000), keys, now: () => Date.now(), expire: (s) => new Promise((resolve) => setTimeout(resolve, s * 1000 + 600)) }
  }
  suite(t, make)

  t.test('a stale idempotency mapping (its record gone) is replaced', async (t) => {
    const { store, keys } = make()
    const first = rec()
    await store.createRecord(first, { ttlSeconds: TTL, idempotencyKey: 'stale' })
    await client.del(keys.record(first.id))
    const second = rec()
    t.same(await store.createRecord(second, { ttlSeconds: TTL, idempotencyKey: 'stale' }), { created: true, record: { ...second, idempotencyKey: 'stale' } })
    t.equal(await client.get(keys.idempotency('stale')), second.id)

    // a mapping that keeps moving to missing records: gives up after a few rounds
    let ghost = 0
    const records = new RedisRecords(async (command) => {
      await client.set(keys.idempotency('moving'), `ghost${ghost++}`)
      return store.run(command)
    }, keys, { now: () => Date.now() })
    await t.rejects(records.createRecord(rec(), { ttlSeconds: TTL, idempotencyKey: 'moving' }), /missing records/)
  })

  t.test('damaged values', async (t) => {
    const { store, keys } = make()
    await client.set(keys.templates, 'not json')
    t.equal(await store.getTemplates(), null)
    await client.set(keys.templates, '{"templates":"no"}')
    t.equal(await store.getTemplates(), null)
    await client.set(keys.stats, 'not a hash')
    await t.rejects(store.stats(), /WRONGTYPE/)
    await client.set(keys.token, 'not json')
    t.equal(await store.getToken(), null)
    await client.set(keys.token, '{"token":1}')
    t.equal(await store.getToken(), null)
    await client.set(keys.token, JSON.stringify({ token: 'T', expiresAt: Date.now() + 1000, fetchedAt: 0 }))
    const later = new RedisStore(client, keys, { now: () => Date.now() + 60_000 }, 2000)
    t.equal(await later.getToken(), null, 'expired by the clock, even if Redis still holds it')
  })

  // An earlier version marked a seen push with '1'; claimPush read any value but 'claimed' and
  // 'done' as 'pending', so after an upgrade WeChat's retries of such pushes got 503 for 10 minutes.
  t.test('push dedupe: a key left by an earlier version (\'1\') reads as done', async (t) => {
    const { store, keys } = make() as Harness & { keys: KeySpace }
    await client.set(keys.pushDedupe('legacy-1'), '1', 'PX', 60_000)
    t.equal(await store.claimPush('legacy-1', 60_000), 'done')
  })

  // The claim's owner was written into the dedupe key ('pending:<owner>'), which an instance of an
  // earlier version (a rolling deploy) reads as done: it would acknowledge WeChat's concurrent retry
  // as a duplicate while this attempt might still fail. The key keeps 'pending'. Failed before.
  t.test('push dedupe: a claim reads as pending to earlier versions too (the key holds \'pending\')', async (t) => {
    const { store, keys } = make() as Harness & { keys: KeySpace }
    t.equal(await store.claimPush('rolling-1', 60_000, 'owner-A'), 'claimed')
    t.equal(await client.get(keys.pushDedupe('rolling-1')), 'pending')
    await store.settlePush('rolling-1', null, 'owner-B')
    t.equal(await client.get(keys.pushDedupe('rolling-1')), 'pending', 'another owner does not drop it')
    await store.settlePush('rolling-1', null, 'owner-A')
    t.equal(await client.exists(keys.pushDedupe('rolling-1'), `${keys.pushDedupe('rolling-1')}:owner`), 0, 'the owner drops it, owner key included')
  })

  t.test('fails fast when Redis cannot answer', async (t) => {
    const { keys } = make()
    t.equal(new RedisStore(client, keys, { now: () => Date.now() }, 2000).redis, client, 'the raw client, for the queue')
    const idle = new Redis(redis.url, { lazyConnect: true })
    await t.rejects(new RedisStore(idle, keys, { now: () => Date.now() }, 2000).getRecord('x'), { code: 'WECHAT_STORE_UNAVAILABLE', message: /wait/ })
    const slow = new RedisStore(client, keys, { now: () => Date.now() }, 20)
    await t.rejects(slow.run(() => new Promise((resolve) => setTimeout(resolve, 200))), { code: 'WECHAT_STORE_UNAVAILABLE', message: /20 ms/ })
  })

  t.test('every key under the prefix and the {appId} tag; every script on one tag', async (t) => {
    const tag = `{${APP_ID}}`
    const written = (await Promise.all(prefixes.map((p) => client.keys(`${p}*`)))).flat()
    t.ok(written.length > 100, `${written.length} keys written`)
    t.ok(written.every((key) => prefixes.some((p) => key.startsWith(`${p}${tag}:`))), 'every key: prefix + {appId}')
    const scripts = commands.filter((c) => c.name === 'evalsha' || c.name === 'eval')
    t.ok(scripts.length > 1000 && scripts.some((c) => c.keys.length >= 8), 'scripts with their KEYS were seen')
    for (const c of commands.filter((c) => c.keys.length > 0)) {
      const space = prefixes.find((p) => c.keys[0].startsWith(`${p}${tag}:`))
      if (!space || !c.keys.every((key) => key.startsWith(`${space}${tag}:`))) t.fail(`${c.name} touches ${c.keys.join(', ')}`)
    }
  })
})
