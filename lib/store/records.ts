/**
 * Message records, counters, credits and the template cache: the types and rules shared by the
 * memory and the Redis store (DESIGN.md `MessageRecord`, Status). Every rule that both stores apply
 * (the transition table, caps, the errcode that means "no consent") is written here once; the Redis
 * store's Lua is generated from it (records-scripts.ts).
 */
export type Status = 'pending' | 'sending' | 'sent' | 'delivered' | 'failed' | 'unknown'

export const STATUSES: readonly Status[] = ['pending', 'sending', 'sent', 'delivered', 'failed', 'unknown']

export interface MessageRecord {
  id: string
  status: Status
  templateId: string
  toUser: string
  attempts: number
  errcode?: number
  errmsg?: string
  /** WeChat's msgid, a decimal string (never a number: it exceeds 2^53) */
  msgid?: string
  createdAt: string
  updatedAt: string
  source?: 'send' | 'queue' | 'hook'
  idempotencyKey?: string
}

/** `undefined` leaves a field alone; `null` clears errcode / errmsg. */
export interface RecordPatch {
  status?: Status
  attempts?: number
  errcode?: number | null
  errmsg?: string | null
  msgid?: string
}

export interface RecentFailure {
  id: string
  templateId: string
  errcode?: number
  errmsg?: string
  at: string
}

export type StatusCounts = Record<Status, number>

/**
 * Counters since the store began (they are never recomputed by scanning: a record that expires
 * keeps its place in them). `total` counts created records; each status counts records now in it.
 */
export interface StatsSnapshot extends StatusCounts {
  total: number
  byTemplate: Record<string, StatusCounts>
  /** errcode (as a string) → how many failures (failed/unknown) were recorded with it: a history, kept when a later receipt delivers the message */
  errcodes: Record<string, number>
  /** newest first, at most RECENT_FAILURES_CAP */
  recentFailures: RecentFailure[]
  /** failures with errcode 43101 (the user has not subscribed / no credit left) */
  noConsent: number
}

export interface TemplateCache {
  fetchedAt: number
  templates: unknown[]
}

/** Nobody waits for this write (a direct send's final record): a store may hold it a few ms to batch it. */
interface WriteTiming {
  deferred?: boolean
}

export interface CreateRecordOptions extends WriteTiming {
  ttlSeconds: number
  idempotencyKey?: string
}

export interface UpdateRecordOptions extends WriteTiming {
  ttlSeconds: number
  /** ISO time of the change: becomes updatedAt, and sentAt for the receipt index */
  now: string
  /** filled in with the status the record had before this update, when it exists (did it move?) */
  before?: { status?: Status }
  /**
   * Apply only while the record has one of these statuses, else answer it unchanged (`before` says
   * which it had): a receipt paired by user, template and time claims a message still waiting for
   * one, atomically, so two receipts arriving together cannot both take the same message.
   */
  onlyFrom?: readonly Status[]
}

/** The message records of `WechatStore` (types.ts): records-memory.ts and records-redis.ts. */
export interface MessageRecordStore {
  /**
   * Atomic: when `idempotencyKey` already maps to a live record (or a record with this id exists),
   * answers `{ created: false, record: existing }` and changes nothing. Otherwise writes the record,
   * the idempotency mapping (same TTL) and the counters.
   */
  createRecord (record: MessageRecord, opts: CreateRecordOptions): Promise<{ created: boolean, record: MessageRecord }>
  /**
   * Atomic: null when the record does not exist; the unchanged record when `patch.status` is not an
   * allowed transition (TRANSITIONS); else the updated record, counters moved, failure histogram,
   * msgid and sent indexes maintained.
   */
  updateRecord (id: string, patch: RecordPatch, opts: UpdateRecordOptions): Promise<MessageRecord | null>
  /**
   * Undo a record whose message never went anywhere (the queue add failed; a keyed send refused for
   * want of credit): only while it still has `status` ('pending' by default, 'sending' for a send's
   * claim); removes it, its idempotency mapping and its counts, so a retry starts clean. With its
   * `idempotencyKey` given, one atomic step (the Redis store otherwise reads the record first).
   */
  discardRecord (id: string, status?: 'pending' | 'sending', idempotencyKey?: string): Promise<boolean>
  /**
   * Free an idempotency key, only while it still maps to `id` (compare-and-delete): a direct send
   * that certainly failed did not send, so a retry under the same key may. The record stays.
   */
  releaseIdempotencyKey (key: string, id: string): Promise<void>
  getRecord (id: string): Promise<MessageRecord | null>
  /** the record id a delivery receipt's msgid belongs to */
  findByMsgid (msgid: string): Promise<string | null>
  /** the 'sent' message to (toUser, templateId) whose sentAt is closest to `aroundMs`, within ±`windowMs` */
  findSentMatch (toUser: string, templateId: string, aroundMs: number, windowMs: number): Promise<string | null>
  stats (): Promise<StatsSnapshot>
}

/** One-time subscription credits per (openid, templateId): credits-memory.ts and credits-redis.ts. */
export interface CreditStore {
  /** returns the new count */
  addCredit (openid: string, templateId: string, n: number): Promise<number>
  /**
   * Several templates at once, all or none (one push's accepts: a retry after a failure must not add
   * twice). With `once`, applied at most once per `once.key` for `once.ttlMs`: a write that timed out
   * and lands later, and the retry's own write, add the counts once between them. `at`: the accepts'
   * time (ms), ordered against change-event rejects (zeroCredit).
   */
  addCredits (openid: string, counts: ReadonlyMap<string, number>, once?: { key: string, ttlMs: number }, at?: number): Promise<void>
  /**
   * Zero a credit. With `at` (a change event's time, ms) this is the user's reject, ordered against
   * their accepts (addCredits' `at`): a reject older than the latest accept applied is stale (WeChat
   * retried its push late) and changes nothing (answers false), and an accept older than the latest
   * reject applied adds nothing, the reject having voided it. Without `at` (a 43101), it always zeroes.
   */
  zeroCredit (openid: string, templateId: string, at?: number): Promise<boolean>
  /** enforce: take one only if there is one (ok false at 0); else take one if any, ok always true */
  useCredit (openid: string, templateId: string, enforce: boolean, mark?: { id: string, ttlMs: number }): Promise<{ ok: boolean, remaining: number }>
  /**
   * Give back the credit a useCredit with `mark` took, only if it took one (its mark is there): the
   * undo of a reserve whose answer never came (it may run late, or not at all). The memory store
   * cannot half-fail, so it has nothing to give back.
   */
  refundMarked (openid: string, templateId: string, markId: string): Promise<void>
  /** give back the credit an enforced send took when WeChat never accepted the message */
  refundCredit (openid: string, templateId: string): Promise<void>
  getCredits (openid: string): Promise<Record<string, number>>
}

/** The account's template list, cached for every instance (lib/delivery/templates-catalog.ts). */
export interface TemplateCacheStore {
  getTemplates (): Promise<TemplateCache | null>
  putTemplates (value: TemplateCache, ttlSeconds: number): Promise<void>
}

/** The records, credits and template cache of `WechatStore` (types.ts), as both stores implement them. */
export interface RecordStore extends MessageRecordStore, CreditStore, TemplateCacheStore {}

/**
 * The allowed status transitions, for both stores. A patch that keeps the status is always allowed
 * (it updates attempts, errcode, msgid...). 'delivered' is final. A failure may turn out delivered
 * (a receipt proves it); an ambiguous 'unknown' may also be settled as failed by a receipt; 'sent'
 * becomes 'delivered' or 'failed' by its receipt; 'sending' goes back to 'pending' for a retry.
 */
export const TRANSITIONS: Readonly<Record<Status, readonly Status[]>> = {
  pending: ['sending', 'sent', 'failed', 'unknown'],
  sending: ['pending', 'sent', 'failed', 'unknown'],
  sent: ['delivered', 'failed'],
  delivered: [],
  failed: ['delivered'],
  unknown: ['delivered', 'failed']
}

export function canTransition (from: Status, to: Status): boolean {
  return from === to || (TRANSITIONS[from]?.includes(to) ?? false)
}

export const FAILURE_STATES: readonly Status[] = ['failed', 'unknown']

/** A message still on its way; every other status is an outcome (final for the queue). */
export const IN_FLIGHT_STATES: ReadonlySet<Status | undefined> = new Set<Status>(['pending', 'sending'])

/**
 * States a delivery receipt (subscribe_msg_sent_event) can settle, so the (openid, template, time)
 * index holds them: 'sent', and 'unknown' (an attempt whose answer was lost may have gone out).
 */
export const AWAITING_RECEIPT: ReadonlySet<string | null | undefined> = new Set<Status>(['sent', 'unknown'])
export const RECENT_FAILURES_CAP = 50
/** newest 'sent' messages kept per (toUser, templateId) for receipts without msgid */
export const SENT_INDEX_CAP = 100
/** WECHAT.md: the user has not subscribed (no one-time credit left) */
export const NO_CONSENT_ERRCODE = 43101
/** separator inside byTemplate field names (`templateId|status`) and sent-index members */
export const SEP = '|'

/**
 * Whether a failure's errcode enters the histogram: on entering failed/unknown from a non-failure
 * state, or when the patch brings a new errcode (so unknown → failed does not count one twice).
 */
export function countsErrcode (from: Status | null, patchHasErrcode: boolean): boolean {
  return patchHasErrcode || from === null || !FAILURE_STATES.includes(from)
}

/** A record reduced to its known fields, optional ones omitted when absent (both stores return this shape). */
export function normalizeRecord (r: MessageRecord): MessageRecord {
  const out: MessageRecord = {
    id: r.id,
    status: r.status,
    templateId: r.templateId,
    toUser: r.toUser,
    attempts: r.attempts,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt
  }
  if (typeof r.errcode === 'number') out.errcode = r.errcode
  if (typeof r.errmsg === 'string') out.errmsg = r.errmsg
  if (typeof r.msgid === 'string') out.msgid = r.msgid
  if (r.source !== undefined) out.source = r.source
  if (typeof r.idempotencyKey === 'string') out.idempotencyKey = r.idempotencyKey
  return out
}

export function emptyCounts (): StatusCounts {
  return { pending: 0, sending: 0, sent: 0, delivered: 0, failed: 0, unknown: 0 }
}

let lastParsed: { iso: string | null, ms: number } = { iso: null, ms: 0 }

/** Milliseconds of an ISO time, or `fallback` when it does not parse. */
export function isoToMs (iso: string, fallback: number): number {
  // Records written together share their time: the last parse answers most calls.
  if (iso === lastParsed.iso) return lastParsed.ms
  const ms = Date.parse(iso)
  if (!Number.isFinite(ms)) return fallback
  lastParsed = { iso, ms }
  return ms
}

/** sentAt as a fixed-width string, so the Redis sent index orders by time within one pair. */
export function padMs (ms: number): string {
  return String(Math.max(0, Math.floor(ms))).padStart(15, '0')
}

export function ttlOf (ttlSeconds: number): number {
  return Math.max(1, Math.ceil(ttlSeconds))
}

export function checkCreditCount (n: number): void {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`credit count must be a positive integer, got ${n}`)
}
