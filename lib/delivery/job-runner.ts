import type { FastifyBaseLogger } from 'fastify'
import { backoffDelay, sleep } from '../api/backoff.js'
import { RATE_LIMIT_DELAY_MS } from '../api/errcodes.js'
import type { WireMessage } from '../api/subscribe.js'
import type { Clock, ResolvedOptions } from '../options.js'
import { IN_FLIGHT_STATES, NO_CONSENT_ERRCODE } from '../store/records.js'
import type { MessageRecord, RecordPatch, Status } from '../store/records.js'
import type { WechatStore } from '../store/types.js'
import { lifecycleName, outcomeEvent } from '../lifecycle.js'
import type { EmitLifecycle } from '../lifecycle.js'
import { msUntilQuotaReset } from '../api/quota.js'
import { inFlightTtl } from './record-ttl.js'
import type { Slots } from './slots.js'
import type { DeliveryOutcome, Sender } from './sender.js'
import { UnwrittenOutcomes } from './unwritten-outcomes.js'

/**
 * The least a queued message waits, without spending an attempt, while the token endpoint refuses
 * (the token hold, token-hold.ts, may say longer): someone has to fix the setup first.
 */
export const TOKEN_REFUSAL_WAIT_MS = 60_000

/**
 * A failure to get a token that WeChat's token endpoint gave with an errcode of its own other than
 * -1 (45011 and 45009 have their classes): 40164, 40125, 40013, 89503, ... (FST_WECHAT_TOKEN,
 * `retryable: false`). Not 40001 on subscribe/send, nor the endpoint unreachable (transient).
 */
function isTokenRefusal (outcome: DeliveryOutcome): boolean {
  const error = outcome.error as { code?: string, retryable?: boolean } | undefined
  return outcome.errorClass === 'token' && error?.code === 'FST_WECHAT_TOKEN' && error.retryable === false && typeof outcome.errcode === 'number'
}

/** What a queue carries per message: our id and the validated wire form. */
export interface JobData {
  id: string
  wire: WireMessage
  /** an earlier attempt timed out: a later 43101 means "maybe delivered" */
  ambiguous?: boolean
  /** credits: 'enforce' took this message's credit at enqueue time */
  reserved?: boolean
  /** who queued it, for a record the worker has to write itself */
  source?: 'send' | 'queue' | 'hook'
  /** attempts it used in a BullMQ batch job before it continued as a single job (batch-jobs.ts) */
  attemptsBefore?: number
  /** delayed until the daily quota resets (45009): resume() sends it again at once */
  parked?: true
}

/** What the queue should do next with a job. */
export type Verdict =
  | { kind: 'done', status: Status }
  | { kind: 'retry', delayMs: number, ambiguous: boolean }
  /** not before delayMs, without spending an attempt: 45011's minute, or a token WeChat refuses until a person acts */
  | { kind: 'wait', delayMs: number }
  /** 45009: stop sending (the whole queue) until the daily quota resets */
  /** `calledAt` (Date.now() ms): when the call that met 45009 left; one made before a resumeQueue() must not pause again */
  | { kind: 'quota', pauseMs: number, calledAt: number }
  /** not tried: the queue paused (45009) or began to close while it waited for its slot (RunOptions: `slot`), or the store did not answer (`store`) */
  | { kind: 'held', delayMs: number, cause: 'slot' | 'store' }

/** How a BullMQ batch job runs its messages (batch-jobs.ts). */
export interface RunOptions {
  /**
   * The WeChat call waits for one of these (the worker's calls in flight); the 'sending' write
   * before it does not, so the messages of a batch are claimed together, in one script call.
   */
  slots?: Slots
  /**
   * Read in the slot just before the call, `until()` answers when the message may be tried (Date.now()
   * ms; now or earlier: hand it back to the queue at once) if it must not be tried now, else undefined;
   * `pause(ms, calledAt)` is called in the slot when the call (made at `calledAt`) met 45009.
   */
  hold?: { until: () => number | undefined, pause: (ms: number, calledAt: number) => void }
}

/**
 * How long a job keeps trying to write its outcome while the store cannot answer (a Redis restart):
 * the message is already with WeChat, so giving up at once would leave its record 'sending' for good.
 */
export const OUTCOME_WRITE_DEADLINE_MS = 30_000
/** How long a message whose record could not be read waits before it is tried again. */
export const STORE_WAIT_MS = 1000

/** A record with any other status has its outcome: its job is done, whatever run it is. */
function hasOutcome (status: Status | undefined): boolean {
  return status !== undefined && !IN_FLIGHT_STATES.has(status)
}

export interface RunnerHooks {
  /** after WeChat accepted a message (credits use it) */
  onSent?: (data: JobData, outcome: DeliveryOutcome) => Promise<void> | void
  /** after a final failure (credits: 43101 means no consent) */
  onFailed?: (data: JobData, outcome: DeliveryOutcome) => Promise<void> | void
  /** the message's lifecycle event, once its outcome is recorded */
  emit?: EmitLifecycle
  /** a 45009 paused sending for `pauseMs` by the plugin's clock (quota-clock.ts) */
  onQuotaPause?: (pauseMs: number) => void
  /** BullMQ: this instance took up the fleet's 45009 pause from Redis (another instance began it) */
  onQuotaAdopted?: () => void
  /** BullMQ: this instance learnt that the fleet's 45009 pause ended (a resume on any instance, or the key's expiry) */
  onQuotaResumed?: () => void
}

/**
 * One delivery attempt of a queued message, the same for the BullMQ queue and the in-process queue:
 * call WeChat once, write the record, and say what the queue does next by errcode class
 * (DESIGN.md "Error classes").
 */
export class JobRunner {
  /** outcomes whose record write failed past its deadline, held until written */
  private readonly unwritten: UnwrittenOutcomes

  constructor (
    private readonly sender: Sender,
    private readonly store: WechatStore,
    private readonly options: Pick<ResolvedOptions, 'retry' | 'retentionSeconds'> & { clock: Clock },
    private readonly log: FastifyBaseLogger,
    private readonly hooks: RunnerHooks = {}
  ) {
    this.unwritten = new UnwrittenOutcomes(log)
  }

  async run (data: JobData, attempt: number, maxAttempts: number, options: RunOptions = {}): Promise<Verdict> {
    // The 'sending' write answers the record as it now stands. A final record means this message
    // already had its outcome: a job added again under the same id after its first run completed
    // and was removed (a queue add retried after its answer was lost), or a job whose run wrote
    // its outcome but was cut off before the queue heard of it. It must not be sent twice.
    const known = this.unwritten.get(data.id)
    if (known !== undefined) {
      // This process has the message's outcome, which its record could not take (unwritten-outcomes.ts):
      // written now, and not sent again.
      if (await this.update(data, known) === null) return { kind: 'held', delayMs: STORE_WAIT_MS, cause: 'store' }
      this.unwritten.delete(data.id)
      this.log.info({ messageId: data.id, status: known.status }, 'wechat: queued message ran again after a Redis outage; its outcome, held in memory, is written and it is not sent again')
      return { kind: 'done', status: known.status as Status }
    }
    const current = await this.update(data, { status: 'sending', attempts: attempt })
    if (current === null) {
      // The store did not answer: whether this message already has its outcome cannot be known, and
      // sending it anyway sent it twice (a batch run again just after a Redis outage, the worker's
      // connection back before the store's). Not tried now; back after STORE_WAIT_MS, no attempt spent.
      return { kind: 'held', delayMs: STORE_WAIT_MS, cause: 'store' }
    }
    if (hasOutcome(current.status)) {
      this.log.debug({ messageId: data.id, status: current.status }, 'wechat: queued message already has its outcome; not sent again')
      return { kind: 'done', status: current.status }
    }
    const { slots, hold } = options
    let calledAt = Date.now()
    const outcome = slots === undefined
      ? await this.sender.deliver(data.id, data.wire, { attempts: 1, ambiguous: data.ambiguous })
      : await slots.use(async () => {
        // The queue paused (a 45009 met by another message) or began to close while this one waited
        // for its slot: it is not tried now.
        const held = hold?.until()
        if (held !== undefined) return held
        calledAt = Date.now()
        const outcome = await this.sender.deliver(data.id, data.wire, { attempts: 1, ambiguous: data.ambiguous })
        // ...and a pause starts before the slot is free for the next one
        // (the quota branch below tells onQuotaPause, once per message)
        if (outcome.errorClass === 'quota') hold?.pause(msUntilQuotaReset(this.options.clock.now()), calledAt)
        return outcome
      })
    if (typeof outcome === 'number') {
      const delayMs = Math.max(0, outcome - Date.now())
      await this.update(data, { status: 'pending', attempts: attempt - 1 }, true, delayMs)
      return { kind: 'held', delayMs, cause: 'slot' }
    }
    const errFields = { errcode: outcome.errcode ?? null, errmsg: outcome.errmsg ?? null, attempts: attempt }

    if (outcome.status === 'sent') {
      await this.update(data, { status: 'sent', msgid: outcome.msgid, attempts: attempt, errcode: null, errmsg: null }, true)
      await this.hooks.onSent?.(data, outcome)
      this.hooks.emit?.('message:sent', () => outcomeEvent(data.id, data.wire, outcome, attempt, data.source ?? 'queue'))
      return { kind: 'done', status: 'sent' }
    }
    if (outcome.errorClass === 'rate') {
      await this.update(data, { status: 'pending', ...errFields }, true, RATE_LIMIT_DELAY_MS)
      return { kind: 'wait', delayMs: RATE_LIMIT_DELAY_MS }
    }
    if (isTokenRefusal(outcome)) {
      // The token endpoint refuses for a reason only a person can fix (IP whitelist, secret, account:
      // WECHAT.md §1.3): attempts spent at backoff speed failed every message queued meanwhile within
      // seconds. It waits instead, without spending one, and goes out once the setup is fixed.
      const delayMs = Math.max(TOKEN_REFUSAL_WAIT_MS, outcome.retryAfterMs ?? 0)
      await this.update(data, { status: 'pending', ...errFields, attempts: attempt - 1 }, true, delayMs)
      return { kind: 'wait', delayMs }
    }
    if (outcome.errorClass === 'quota') {
      const pauseMs = msUntilQuotaReset(this.options.clock.now())
      await this.update(data, { status: 'pending', ...errFields }, true, pauseMs)
      this.hooks.onQuotaPause?.(pauseMs)
      // (a held token refusal made no call: it is as old as the refusal it repeats, which a resume
      // since then has ended; taken as made now, it paused the fleet again after the resume)
      return { kind: 'quota', pauseMs, calledAt: outcome.refusedAt ?? calledAt }
    }
    const retryable = outcome.errorClass === 'transient' || outcome.errorClass === 'token'
    if (retryable && attempt < maxAttempts) {
      // (no token until WeChat is asked again: an attempt spent sooner would fail the same way)
      const delayMs = Math.max(backoffDelay(attempt, this.options.retry), outcome.retryAfterMs ?? 0)
      await this.update(data, { status: 'pending', ...errFields }, true, delayMs)
      return { kind: 'retry', delayMs, ambiguous: outcome.ambiguous }
    }
    // Final: a permanent error, attempts used up, or 43101 after an ambiguous attempt ('unknown').
    const status: Status = outcome.status === 'unknown' ? 'unknown' : 'failed'
    await this.update(data, { status, ...errFields }, true)
    await this.hooks.onFailed?.(data, outcome)
    this.hooks.emit?.(lifecycleName(status), () => ({ ...outcomeEvent(data.id, data.wire, outcome, attempt, data.source ?? 'queue'), status }))
    // (43101, the user has no subscription left, is "no consent", not an alarm: info, as in sender.ts)
    this.log[outcome.errcode === NO_CONSENT_ERRCODE && status === 'failed' ? 'info' : 'warn']({ messageId: data.id, status, errcode: outcome.errcode, attempts: attempt }, 'wechat: queued message ended without delivery')
    return { kind: 'done', status }
  }

  /**
   * A best-effort write (`sending`), or with `durable` one retried until OUTCOME_WRITE_DEADLINE_MS.
   * Answers the record after the write (unchanged when the store refused the transition), or null
   * when the store could not be reached. `waitMs`: how long a message going back to 'pending' waits
   * before its next run (its record must outlive that: record-ttl.ts).
   */
  private async update (data: JobData, patch: RecordPatch, durable = false, waitMs = 0): Promise<MessageRecord | null> {
    const id = data.id
    const now = new Date(this.options.clock.now()).toISOString()
    const deadline = Date.now() + (durable ? OUTCOME_WRITE_DEADLINE_MS : 0)
    const retention = this.options.retentionSeconds
    const ttlSeconds = hasOutcome(patch.status) ? retention : inFlightTtl(retention, waitMs)
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.write(data, patch, ttlSeconds, now)
      } catch (err) {
        if (Date.now() >= deadline) {
          // The message itself is safe in the queue; a lost status write is logged, not fatal. An
          // outcome is kept in memory and written later, so a run of the job after the outage does
          // not send the message again.
          this.log.warn({ messageId: id, reason: (err as Error).message, status: patch.status }, 'wechat: could not write the message record')
          if (durable && hasOutcome(patch.status)) this.unwritten.keep(id, patch, async () => await this.write(data, patch, ttlSeconds, now) !== null)
          return null
        }
        await sleep(Math.min(1000, 25 * 2 ** attempt))
      }
    }
  }

  /** One write of the record: updated, or written from the job when it has none yet. */
  private async write (data: JobData, patch: RecordPatch, ttlSeconds: number, now: string): Promise<MessageRecord | null> {
    const options = { ttlSeconds, now }
    const updated = await this.store.updateRecord(data.id, patch, options)
    if (updated !== null) return updated
    // No record yet: the enqueue writes it just after queueing the job (or was cut off there).
    // Write it from the job; if the enqueue's record landed in between, update that one.
    const { created, record } = await this.store.createRecord(recordFromJob(data, patch, now), { ttlSeconds })
    return created ? record : await this.store.updateRecord(data.id, patch, options)
  }
}

function recordFromJob (data: JobData, patch: RecordPatch, now: string): MessageRecord {
  const record: MessageRecord = {
    id: data.id,
    status: patch.status ?? 'pending',
    templateId: data.wire.template_id,
    toUser: data.wire.touser,
    attempts: patch.attempts ?? 0,
    createdAt: now,
    updatedAt: now,
    source: data.source ?? 'queue'
  }
  if (typeof patch.errcode === 'number') record.errcode = patch.errcode
  if (typeof patch.errmsg === 'string') record.errmsg = patch.errmsg
  if (patch.msgid !== undefined) record.msgid = patch.msgid
  return record
}
