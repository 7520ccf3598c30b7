import type { Clock } from '../options.js'
import type { KeySpace } from './keys.js'
import { AWAITING_RECEIPT, emptyCounts, FAILURE_STATES, isoToMs, normalizeRecord, padMs, RECENT_FAILURES_CAP, SEP, STATUSES, ttlOf } from './records.js'
import type {
  CreateRecordOptions, MessageRecord, MessageRecordStore, RecentFailure, RecordPatch, StatsSnapshot, Status,
  StatusCounts, UpdateRecordOptions
} from './records.js'
import { RecordWrites } from './record-writes.js'
import type { Run } from './record-writes.js'
import { WRITE_REPLY } from './records-scripts.js'

export type { Run } from './record-writes.js'

/** A stale idempotency mapping (its record gone) is replaced at most this many times per create. */
const CREATE_ATTEMPTS = 3

/**
 * The records part of the Redis store (key layout in keys.ts, Lua in records-scripts.ts). Creates
 * and updates are each applied atomically by the write script, those issued together in one call
 * (record-writes.ts); counters are hashes moved inside it, never recomputed by scanning. Every other
 * command first sends the queued writes, so it is ordered after them on the connection.
 */
export class RedisRecords implements MessageRecordStore {
  private readonly writes: RecordWrites
  private readonly run: Run

  constructor (run: Run, private readonly keys: KeySpace, private readonly clock: Clock) {
    const k = keys
    this.writes = new RecordWrites(run, [k.stats, k.byTemplate, k.errcodes, k.recent, k.sentPair, k.sentTime])
    this.run = (command) => {
      this.writes.flush()
      return run(command)
    }
  }

  /** Send the queued writes now (RedisStore.run calls it before any other command). */
  flushWrites (): void {
    this.writes.flush()
  }

  /** Send the queued writes and wait for the answers of all writes sent so far (close()). */
  drainWrites (): Promise<void> {
    return this.writes.drain()
  }

  async createRecord (input: MessageRecord, opts: CreateRecordOptions): Promise<{ created: boolean, record: MessageRecord }> {
    const key = opts.idempotencyKey
    const record = normalizeRecord(key === undefined ? input : { ...input, idempotencyKey: key })
    const ttl = ttlOf(opts.ttlSeconds)
    const keys = [this.keys.record(record.id)]
    if (key !== undefined) keys.push(this.keys.idempotency(key))
    if (record.msgid !== undefined) keys.push(this.keys.msgid(record.msgid))
    const hasMsgid = record.msgid === undefined ? '0' : '1'
    if (key === undefined && !needsWholeRecord(record.status, hasMsgid === '1')) {
      const reply = await this.writes.write(keys, ['p', String(ttl), hasMsgid, recordJson(record), record.id, record.status, record.templateId], opts.deferred)
      if (reply[0] === WRITE_REPLY.created) return { created: true, record }
      return { created: false, record: parseRecord(reply[1] as string) }
    }
    const sentAt = isoToMs(record.updatedAt, this.clock.now())
    const write = ['c', String(ttl), String(sentAt), padMs(sentAt), String(sentAt - ttl * 1000), key === undefined ? '0' : '1',
      hasMsgid, '', recordJson(record), record.id, record.status, record.templateId]
    for (let attempt = 1; ; attempt++) {
      const reply = await this.writes.write(keys, write, opts.deferred)
      if (reply[0] === WRITE_REPLY.created) return { created: true, record }
      if (reply[0] === WRITE_REPLY.exists) return { created: false, record: parseRecord(reply[1] as string) }
      // the idempotency key maps to another record: answer it, unless it expired before its mapping
      const prior = await this.getRecord(reply[1] as string)
      if (prior) return { created: false, record: prior }
      if (attempt === CREATE_ATTEMPTS) throw new Error(`idempotency key kept mapping to missing records (last ${reply[1]})`)
      write[STALE] = reply[1] as string
    }
  }

  async updateRecord (id: string, patch: RecordPatch, opts: UpdateRecordOptions): Promise<MessageRecord | null> {
    const ttl = ttlOf(opts.ttlSeconds)
    const nowMs = isoToMs(opts.now, this.clock.now())
    const keys = [this.keys.record(id)]
    if (patch.msgid !== undefined) keys.push(this.keys.msgid(patch.msgid))
    const write = ['u', String(ttl), String(nowMs), padMs(nowMs), String(nowMs - ttl * 1000), opts.now,
      patch.msgid === undefined ? '0' : '1', JSON.stringify(opts.onlyFrom === undefined ? patchOf(patch) : { ...patchOf(patch), onlyFrom: opts.onlyFrom })]
    const reply = await this.writes.write(keys, write, opts.deferred)
    if (reply[0] !== WRITE_REPLY.updated) return null
    if (opts.before !== undefined) opts.before.status = reply[2] as Status
    return parseRecord(reply[1] as string)
  }

  async discardRecord (id: string, status: 'pending' | 'sending' = 'pending', idempotencyKey?: string): Promise<boolean> {
    const k = this.keys
    let key = idempotencyKey
    if (key === undefined) {
      // (two round trips: a caller that knows the key makes it one, atomic: an undo of a claim that
      // landed late must not let another claim under the key read it in between)
      const record = readRecord(await this.run((c) => c.get(k.record(id))))
      if (record?.status !== status) return false
      key = record.idempotencyKey
    }
    const keys = [k.record(id), k.stats, k.byTemplate, ...(key === undefined ? [] : [k.idempotency(key)])]
    return (await this.run((c) => c.wechatPushDiscardRecord(keys.length, ...keys, id, status))) === 1
  }

  async releaseIdempotencyKey (key: string, id: string): Promise<void> {
    // (the lock's compare-and-delete script: the same "delete only if it still holds this value")
    await this.run((c) => c.wechatPushReleaseLock(this.keys.idempotency(key), id))
  }

  async getRecord (id: string): Promise<MessageRecord | null> {
    const json = await this.run((c) => c.get(this.keys.record(id)))
    return readRecord(json)
  }

  async findByMsgid (msgid: string): Promise<string | null> {
    return this.run((c) => c.get(this.keys.msgid(msgid)))
  }

  async findSentMatch (toUser: string, templateId: string, aroundMs: number, windowMs: number): Promise<string | null> {
    const pair = `${toUser}${SEP}${templateId}${SEP}`
    const lo = `[${pair}${padMs(aroundMs - windowMs)}`
    const hi = `(${pair}${padMs(aroundMs + windowMs + 1)}`
    const members = await this.run((c) => c.zrangebylex(this.keys.sentPair, lo, hi))
    // closest first; on a tie the earlier (members come in time order and the sort is stable)
    const candidates = members.map((member) => {
      const rest = member.slice(pair.length)
      const at = rest.indexOf(SEP)
      return { distance: Math.abs(Number(rest.slice(0, at)) - aroundMs), id: rest.slice(at + 1) }
    }).filter((c) => c.distance <= windowMs).sort((a, b) => a.distance - b.distance)
    if (candidates.length === 0) return null
    const records = await this.run((c) => c.mget(candidates.map(({ id }) => this.keys.record(id))))
    const index = records.findIndex((json) => {
      const record = readRecord(json)
      return record !== null && AWAITING_RECEIPT.has(record.status) && record.toUser === toUser && record.templateId === templateId
    })
    return index === -1 ? null : candidates[index].id
  }

  async stats (): Promise<StatsSnapshot> {
    const replies = await this.run((c) => c.multi()
      .hgetall(this.keys.stats)
      .hgetall(this.keys.byTemplate)
      .hgetall(this.keys.errcodes)
      .lrange(this.keys.recent, 0, RECENT_FAILURES_CAP - 1)
      .exec())
    const [stats, byTemplate, errcodes, recent] = values(replies) as [Record<string, string>, Record<string, string>, Record<string, string>, string[]]
    const counts = emptyCounts()
    for (const status of STATUSES) counts[status] = Number(stats[status] ?? 0)
    // A Map, then own properties: a template id such as '__proto__' (any string reaches the counters
    // when validation does not know the template) must not write through to Object.prototype.
    const templates = new Map<string, StatusCounts>()
    for (const [field, value] of Object.entries(byTemplate)) {
      const at = field.lastIndexOf(SEP)
      const templateId = field.slice(0, at)
      let counts = templates.get(templateId)
      if (counts === undefined) templates.set(templateId, counts = emptyCounts())
      counts[field.slice(at + 1) as Status] = Number(value)
    }
    return {
      ...counts,
      total: Number(stats.total ?? 0),
      noConsent: Number(stats.noConsent ?? 0),
      byTemplate: Object.fromEntries(templates),
      errcodes: Object.fromEntries(Object.entries(errcodes).map(([code, n]) => [code, Number(n)])),
      recentFailures: recent.map((text) => JSON.parse(text) as RecentFailure)
    }
  }
}

/**
 * Whether a create must go through the script's full path (records-scripts.ts needsRecord): a failure
 * (the recent-failures list) or a message awaiting its receipt without a msgid (the sent index).
 */
function needsWholeRecord (status: Status, hasMsgid: boolean): boolean {
  return FAILURE_STATES.includes(status) || (AWAITING_RECEIPT.has(status) && !hasMsgid)
}

/** Where a create's write holds the stale mapping id it may replace. */
const STALE = 7

/**
 * The record as stored: one JSON string. Lua's cjson refuses the escape of a lone surrogate, which
 * JSON.stringify writes, so such strings become U+FFFD first (as UTF-8 arguments did before): only
 * when the JSON shows one, so the usual record costs one regular-expression test.
 */
function recordJson (record: MessageRecord): string {
  const json = JSON.stringify(record)
  if (!LONE_SURROGATE.test(json)) return json
  const copy: Record<string, unknown> = { ...record }
  for (const field in copy) if (typeof copy[field] === 'string') copy[field] = wellFormed(copy[field] as string)
  return JSON.stringify(copy)
}

/** JSON.stringify's escape of a lone surrogate (a false positive, a literal backslash-u text, only costs the slow path). */
const LONE_SURROGATE = /\\u[dD][89a-fA-F]/

function wellFormed (value: string): string {
  return (value as string & { toWellFormed (): string }).toWellFormed()
}

/** Only the known fields; a missing status (even null) keeps the current one, as in the memory store. */
function patchOf ({ status, attempts, errcode, errmsg, msgid }: RecordPatch): Record<string, unknown> {
  return { status: status ?? undefined, attempts, errcode, errmsg: typeof errmsg === 'string' ? wellFormed(errmsg) : errmsg, msgid: typeof msgid === 'string' ? wellFormed(msgid) : msgid }
}

/** The replies of a pipeline or transaction; the first failed command's error is thrown. */
function values (replies: [Error | null, unknown][] | null): unknown[] {
  return (replies as [Error | null, unknown][]).map(([err, value]) => {
    if (err) throw err
    return value
  })
}

/** A stored record back, or null when the key holds something else than a record (damaged, foreign). */
function readRecord (json: string | null): MessageRecord | null {
  if (json === null) return null
  try {
    return parseRecord(json)
  } catch {
    return null
  }
}

function parseRecord (json: string): MessageRecord {
  const r = JSON.parse(json) as Record<string, unknown>
  if (typeof r?.id !== 'string' || typeof r.status !== 'string') throw new Error('the stored record is damaged (not a record\'s JSON)')
  return normalizeRecord({
    id: r.id as string,
    status: r.status as Status,
    templateId: r.templateId as string,
    toUser: r.toUser as string,
    attempts: Number(r.attempts),
    errcode: r.errcode === undefined ? undefined : Number(r.errcode),
    errmsg: r.errmsg as string | undefined,
    msgid: r.msgid as string | undefined,
    createdAt: r.createdAt as string,
    updatedAt: r.updatedAt as string,
    source: r.source as MessageRecord['source'],
    idempotencyKey: r.idempotencyKey as string | undefined
  })
}
