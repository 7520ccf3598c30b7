import type { Clock } from '../options.js'
import {
  AWAITING_RECEIPT, canTransition, countsErrcode, emptyCounts, FAILURE_STATES, IN_FLIGHT_STATES, isoToMs, NO_CONSENT_ERRCODE,
  normalizeRecord, RECENT_FAILURES_CAP, SENT_INDEX_CAP, ttlOf
} from './records.js'
import type {
  CreateRecordOptions, MessageRecord, MessageRecordStore, RecentFailure, RecordPatch, StatsSnapshot, Status,
  StatusCounts, UpdateRecordOptions
} from './records.js'

/**
 * Finished records kept at most by default; the least recently written are evicted first (like
 * Redis' TTL, counters stay). Records of messages still on their way (pending, sending) are not
 * counted and never evicted: their messages wait in the queue, which bounds them.
 */
export const MAX_MEMORY_RECORDS = 100_000

interface Expiring<T> { value: T, until: number }
/** A record with its expiry (one object per record: the store may hold 100,000 of them) */
interface StoredRecord { record: MessageRecord, until: number, sentAt?: number }
interface SentEntry { sentAt: number, id: string }

/**
 * The message records of the memory store: the same contract as RedisRecords, expiry on the injected
 * clock, pruned lazily, and bounded (`maxRecords`) so a long-running process cannot grow forever.
 */
export class MemoryRecords implements MessageRecordStore {
  private readonly records = new Map<string, StoredRecord>()
  /** ids of the finished records (sent, delivered, failed, unknown), least recently written first */
  private readonly finished = new Set<string>()
  private readonly idempotency = new Map<string, Expiring<string>>()
  /** msgid → record id; a mapping goes with its record (evicted, expired), so it needs no expiry of its own */
  private readonly msgids = new Map<string, string>()
  /** `toUser\ntemplateId` → 'sent' messages, oldest first */
  private readonly sent = new Map<string, SentEntry[]>()
  private readonly counts: StatusCounts & { total: number, noConsent: number } = { ...emptyCounts(), total: 0, noConsent: 0 }
  private readonly byTemplate = new Map<string, StatusCounts>()
  private readonly errcodes = new Map<string, number>()
  private recent: RecentFailure[] = []
  /** the size at which each bounded map is swept next (trim()) */
  private readonly sweepAt = new WeakMap<object, number>()

  constructor (private readonly clock: Clock, private readonly maxRecords = MAX_MEMORY_RECORDS) {}

  async createRecord (input: MessageRecord, opts: CreateRecordOptions): Promise<{ created: boolean, record: MessageRecord }> {
    const now = this.clock.now()
    const existing = this.liveRecord(input.id, now)
    if (existing) return { created: false, record: { ...existing.record } }
    const key = opts.idempotencyKey
    if (key !== undefined) {
      const id = this.live(this.idempotency, key, now)
      const prior = id === undefined ? undefined : this.liveRecord(id, now)
      if (prior) return { created: false, record: { ...prior.record } }
    }
    const record = normalizeRecord(key === undefined ? input : { ...input, idempotencyKey: key })
    const stored: StoredRecord = { record, until: 0 }
    this.putRecord(stored, opts.ttlSeconds, now, true)
    if (key !== undefined) this.set(this.idempotency, key, record.id, opts.ttlSeconds, now, (entry) => this.inFlight(entry.value))
    if (record.msgid !== undefined) this.indexMsgid(record.msgid, record.id)
    this.counts.total++
    this.enter(stored, null, record.status, isoToMs(record.updatedAt, now), record.updatedAt, true, opts.ttlSeconds)
    return { created: true, record: { ...record } }
  }

  async releaseIdempotencyKey (key: string, id: string): Promise<void> {
    if (this.live(this.idempotency, key) === id) this.idempotency.delete(key)
  }

  async discardRecord (id: string, status: 'pending' | 'sending' = 'pending'): Promise<boolean> {
    const stored = this.liveRecord(id)
    if (!stored || stored.record.status !== status) return false
    const { record } = stored
    this.records.delete(id)
    if (record.idempotencyKey !== undefined && this.live(this.idempotency, record.idempotencyKey) === id) this.idempotency.delete(record.idempotencyKey)
    this.counts.total--
    this.counts[status]--
    const counts = this.byTemplate.get(record.templateId)
    if (counts) counts[status]--
    return true
  }

  async updateRecord (id: string, patch: RecordPatch, opts: UpdateRecordOptions): Promise<MessageRecord | null> {
    const stored = this.liveRecord(id)
    if (!stored) return null
    const old = stored.record.status
    if (opts.before !== undefined) opts.before.status = old
    const next = patch.status ?? old
    if (!canTransition(old, next) || (opts.onlyFrom !== undefined && !opts.onlyFrom.includes(old))) return { ...stored.record }
    const record: MessageRecord = { ...stored.record, status: next, updatedAt: opts.now }
    if (patch.attempts !== undefined) record.attempts = patch.attempts
    if (patch.errcode === null) delete record.errcode
    else if (patch.errcode !== undefined) record.errcode = patch.errcode
    if (patch.errmsg === null) delete record.errmsg
    else if (patch.errmsg !== undefined) record.errmsg = patch.errmsg
    if (patch.msgid !== undefined) record.msgid = patch.msgid
    stored.record = record
    this.putRecord(stored, opts.ttlSeconds) // re-inserted: Map order is eviction order
    if (patch.msgid !== undefined) this.indexMsgid(patch.msgid, id)
    this.enter(stored, old, next, isoToMs(opts.now, this.clock.now()), opts.now, typeof patch.errcode === 'number', opts.ttlSeconds)
    return { ...record }
  }

  async getRecord (id: string): Promise<MessageRecord | null> {
    const entry = this.liveRecord(id)
    return entry ? { ...entry.record } : null
  }

  async findByMsgid (msgid: string): Promise<string | null> {
    const id = this.msgids.get(msgid)
    if (id === undefined) return null
    if (this.liveRecord(id)) return id
    this.msgids.delete(msgid)
    return null
  }

  async findSentMatch (toUser: string, templateId: string, aroundMs: number, windowMs: number): Promise<string | null> {
    let best: string | null = null
    let bestDistance = Infinity
    for (const { sentAt, id } of this.sent.get(pairOf(toUser, templateId)) ?? []) {
      const distance = Math.abs(sentAt - aroundMs)
      if (distance > windowMs || distance >= bestDistance) continue
      if (!AWAITING_RECEIPT.has(this.liveRecord(id)?.record.status)) continue
      best = id
      bestDistance = distance
    }
    return best
  }

  async stats (): Promise<StatsSnapshot> {
    return {
      ...this.counts,
      // own properties (fromEntries): a template id '__proto__' stays a key, not the object's prototype
      byTemplate: Object.fromEntries([...this.byTemplate].map(([templateId, counts]) => [templateId, { ...counts }])),
      errcodes: Object.fromEntries(this.errcodes),
      recentFailures: this.recent.map((f) => ({ ...f }))
    }
  }

  /** The status counters and indexes of a move from `old` (null: a new record) to `next`. */
  private enter (stored: StoredRecord, old: Status | null, next: Status, nowMs: number, at: string, patchHasErrcode: boolean, ttlSeconds: number): void {
    if (old === next) return
    const { record } = stored
    const counts = this.byTemplate.get(record.templateId) ?? emptyCounts()
    this.byTemplate.set(record.templateId, counts)
    if (old !== null) {
      this.counts[old]--
      counts[old]--
    }
    this.counts[next]++
    counts[next]++
    if (FAILURE_STATES.includes(next)) this.failure(record, old, at, patchHasErrcode)
    if (AWAITING_RECEIPT.has(old) && stored.sentAt !== undefined) {
      const pair = pairOf(record.toUser, record.templateId)
      const list = this.sent.get(pair)
      if (list) this.sent.set(pair, list.filter((e) => e.id !== record.id))
      delete stored.sentAt
    }
    // Receipts find a message by msgid when WeChat returned one; the pair index is only for the rest.
    if (AWAITING_RECEIPT.has(next) && record.msgid === undefined) {
      const pair = pairOf(record.toUser, record.templateId)
      stored.sentAt = nowMs
      const cutoff = nowMs - ttlOf(ttlSeconds) * 1000
      const list = (this.sent.get(pair) ?? []).filter((e) => e.sentAt > cutoff)
      list.push({ sentAt: nowMs, id: record.id })
      list.sort((a, b) => a.sentAt - b.sentAt || (a.id < b.id ? -1 : 1))
      this.sent.delete(pair)
      if (this.sweepDue(this.sent)) this.trim(this.sent, { expired: (entries) => !entries.some((e) => this.records.has(e.id)) })
      this.sent.set(pair, list.slice(-SENT_INDEX_CAP))
    }
  }

  private failure (record: MessageRecord, old: Status | null, at: string, patchHasErrcode: boolean): void {
    const entry: RecentFailure = { id: record.id, templateId: record.templateId, at }
    if (record.errcode !== undefined) {
      entry.errcode = record.errcode
      if (countsErrcode(old, patchHasErrcode)) {
        const code = String(record.errcode)
        this.errcodes.set(code, (this.errcodes.get(code) ?? 0) + 1)
      }
      // Once the message ends failed (an 'unknown' 43101 followed an attempt that may have been
      // delivered: not the user's refusal for sure, until it is settled failed)
      if (record.errcode === NO_CONSENT_ERRCODE && record.status === 'failed') this.counts.noConsent++
    }
    if (record.errmsg !== undefined) entry.errmsg = record.errmsg
    this.recent = [entry, ...this.recent].slice(0, RECENT_FAILURES_CAP)
  }

  /** a message still on its way: its record is pending or sending */
  private inFlight (id: string): boolean {
    return IN_FLIGHT_STATES.has(this.records.get(id)?.record.status)
  }

  private liveRecord (id: string, now = this.clock.now()): StoredRecord | undefined {
    const stored = this.records.get(id)
    if (!stored) return undefined
    if (stored.until > now) return stored
    this.forget(stored)
    this.finished.delete(id)
    return undefined
  }

  /** Drops a record and the msgid mapping that leads to it. */
  private forget (stored: StoredRecord): void {
    const { id, msgid } = stored.record
    this.records.delete(id)
    if (msgid !== undefined && this.msgids.get(msgid) === id) this.msgids.delete(msgid)
  }

  private indexMsgid (msgid: string, id: string): void {
    // (mappings normally go with their records; a sweep finds those left behind, e.g. by a second
    // msgid; their order does not matter, so a mapping is not moved to the end as records are)
    if (this.sweepDue(this.msgids)) this.trim<string>(this.msgids, { expired: (recordId) => !this.records.has(recordId), pinned: () => true })
    this.msgids.set(msgid, id)
  }

  /** `fresh`: the id is known to be absent (not among the finished either) */
  private putRecord (stored: StoredRecord, ttlSeconds: number, now = this.clock.now(), fresh = false): void {
    const id = stored.record.id
    stored.until = now + ttlOf(ttlSeconds) * 1000
    this.records.set(id, stored)
    if (!fresh) this.finished.delete(id) // re-inserted below: Set order is eviction order
    if (IN_FLIGHT_STATES.has(stored.record.status)) return
    if (this.sweepDue(this.finished)) this.sweepFinished(now)
    this.finished.add(id)
  }

  private sweepFinished (now: number): void {
    const expired = (finishedId: string): boolean => (this.records.get(finishedId)?.until ?? 0) <= now
    this.trim<string>(this.finished, {
      expired,
      evicted: (finishedId) => {
        const stored = this.records.get(finishedId)
        if (stored) this.forget(stored)
      }
    })
  }

  private live<T> (map: Map<string, Expiring<T>>, key: string, now = this.clock.now()): T | undefined {
    const entry = map.get(key)
    if (!entry) return undefined
    if (entry.until > now) return entry.value
    map.delete(key)
    return undefined
  }

  /** Whether `map` has reached the size of its next sweep (checked before building trim()'s rules: a send makes none). */
  private sweepDue (map: Map<string, unknown> | Set<string>): boolean {
    return map.size >= (this.sweepAt.get(map) ?? this.maxRecords)
  }

  /**
   * Keeps each map under the cap (once sweepDue): from the least recently written end, drops what
   * expired and evicts down to 90 % of the cap (so the sweep runs once per many inserts, not on
   * each), passing over what is `pinned` (the keys of messages still on their way). It stops at the
   * first live entry once under that size: entries are in write order, so with one TTL the expired
   * ones are the oldest, and a sweep costs what it removes, not the size of the map (an expired entry
   * further on is invisible to reads and goes in a later sweep). When pinned entries alone fill the
   * cap, the next sweep waits until the map has grown by a tenth again, so it never runs on every
   * insert. Counters stay, as with Redis' TTL; an idempotency mapping may outlive its record, as in Redis.
   */
  private trim<V> (map: Map<string, V> | Set<string>, rules: TrimRules<V>): void {
    const { expired, evicted, pinned } = rules
    const target = Math.min(this.maxRecords - 1, Math.floor(this.maxRecords * 0.9))
    for (const [key, value] of map.entries()) {
      const over = map.size > target
      if (expired(value as V) || (over && pinned?.(value as V) !== true)) {
        map.delete(key)
        evicted?.(key)
      } else if (!over) {
        break
      }
    }
    this.sweepAt.set(map, Math.max(this.maxRecords, Math.ceil(map.size / 0.9)))
  }

  private set<T> (map: Map<string, Expiring<T>>, key: string, value: T, ttlSeconds: number, now = this.clock.now(), pinned?: (entry: Expiring<T>) => boolean): void {
    map.delete(key)
    if (this.sweepDue(map)) this.trim(map, { expired: (entry) => entry.until <= now, pinned })
    map.set(key, { value, until: now + ttlOf(ttlSeconds) * 1000 })
  }
}

interface TrimRules<V> {
  expired: (value: V) => boolean
  /** called for each key trimmed */
  evicted?: (key: string) => void
  /** never evicted for room (only once expired) */
  pinned?: (value: V) => boolean
}

function pairOf (toUser: string, templateId: string): string {
  return `${toUser}\n${templateId}`
}
