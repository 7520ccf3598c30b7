import type { FastifyBaseLogger } from 'fastify'
import { backoffDelay, sleep } from '../api/backoff.js'
import { RATE_LIMIT_DELAY_MS } from '../api/errcodes.js'
import type { WireMessage } from '../api/subscribe.js'
import type { Clock, ResolvedOptions } from '../options.js'
import type { MessageRecord, RecordPatch, Status } from '../store/records.js'
import type { WechatStore } from '../store/types.js'
import { msUntilChinaMidnight } from './quota.js'
import type { DeliveryOutcome, Sender } from './sender.js'

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
}

/** What the queue should do next with a job. */
export type Verdict =
  | { kind: 'done', status: Status }
  | { kind: 'retry', delayMs: number, ambiguous: boolean }
  /** 45011: not before 60 s, without spending an attempt */
  | { kind: 'rate', delayMs: number }
  /** 45009: stop sending (the whole queue) until the daily quota resets */
  | { kind: 'quota', pauseMs: number }

/**
 * How long a job keeps trying to write its outcome while the store cannot answer (a Redis restart):
 * the message is already with WeChat, so giving up at once would leave its record 'sending' for good.
 */
export const OUTCOME_WRITE_DEADLINE_MS = 30_000

export interface RunnerHooks {
  /** after WeChat accepted a message (credits use it) */
  onSent?: (data: JobData, outcome: DeliveryOutcome) => Promise<void> | void
  /** after a final failure (credits: 43101 means no consent) */
  onFailed?: (data: JobData, outcome: DeliveryOutcome) => Promise<void> | void
}

/**
 * One delivery attempt of a queued message, the same for the BullMQ queue and the in-process queue:
 * call WeChat once, write the record, and say what the queue does next by errcode class
 * (DESIGN.md "Error classes").
 */
export class JobRunner {
  constructor (
    private readonly sender: Sender,
    private readonly store: WechatStore,
    private readonly options: Pick<ResolvedOptions, 'retry' | 'retentionSeconds'> & { clock: Clock },
    private readonly log: FastifyBaseLogger,
    private readonly hooks: RunnerHooks = {}
  ) {}

  async run (data: JobData, attempt: number, maxAttempts: number): Promise<Verdict> {
    // Not awaited: the final write follows on the same connection, so order is kept and the send
    // path costs one awaited round trip.
    this.update(data, { status: 'sending', attempts: attempt }).catch(() => {})
    const outcome = await this.sender.deliver(data.id, data.wire, { attempts: 1, ambiguous: data.ambiguous })
    const errFields = { errcode: outcome.errcode ?? null, errmsg: outcome.errmsg ?? null, attempts: attempt }

    if (outcome.status === 'sent') {
      await this.update(data, { status: 'sent', msgid: outcome.msgid, attempts: attempt, errcode: null, errmsg: null }, true)
      await this.hooks.onSent?.(data, outcome)
      return { kind: 'done', status: 'sent' }
    }
    if (outcome.errorClass === 'rate') {
      await this.update(data, { status: 'pending', ...errFields }, true)
      return { kind: 'rate', delayMs: RATE_LIMIT_DELAY_MS }
    }
    if (outcome.errorClass === 'quota') {
      await this.update(data, { status: 'pending', ...errFields }, true)
      return { kind: 'quota', pauseMs: msUntilChinaMidnight(this.options.clock.now()) }
    }
    const retryable = outcome.errorClass === 'transient' || outcome.errorClass === 'token'
    if (retryable && attempt < maxAttempts) {
      await this.update(data, { status: 'pending', ...errFields }, true)
      return { kind: 'retry', delayMs: backoffDelay(attempt, this.options.retry), ambiguous: outcome.ambiguous }
    }
    // Final: a permanent error, attempts used up, or 43101 after an ambiguous attempt ('unknown').
    const status: Status = outcome.status === 'unknown' ? 'unknown' : 'failed'
    await this.update(data, { status, ...errFields }, true)
    await this.hooks.onFailed?.(data, outcome)
    this.log.warn({ messageId: data.id, status, errcode: outcome.errcode, attempts: attempt }, 'wechat: queued message ended without delivery')
    return { kind: 'done', status }
  }

  /** A best-effort write (`sending`), or with `durable` one retried until OUTCOME_WRITE_DEADLINE_MS. */
  private async update (data: JobData, patch: RecordPatch, durable = false): Promise<void> {
    const id = data.id
    const now = new Date(this.options.clock.now()).toISOString()
    const deadline = Date.now() + (durable ? OUTCOME_WRITE_DEADLINE_MS : 0)
    for (let attempt = 1; ; attempt++) {
      try {
        const options = { ttlSeconds: this.options.retentionSeconds, now }
        const updated = await this.store.updateRecord(id, patch, options)
        if (updated === null) {
          // No record yet: the enqueue writes it just after queueing the job (or was cut off there).
          // Write it from the job; if the enqueue's record landed in between, update that one.
          const { created } = await this.store.createRecord(recordFromJob(data, patch, now), { ttlSeconds: options.ttlSeconds })
          if (!created) await this.store.updateRecord(id, patch, options)
        }
        return
      } catch (err) {
        if (Date.now() >= deadline) {
          // The message itself is safe in the queue; a lost status write is logged, not fatal.
          this.log.warn({ messageId: id, reason: (err as Error).message, status: patch.status }, 'wechat: could not write the message record')
          return
        }
        await sleep(Math.min(1000, 25 * 2 ** attempt))
      }
    }
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
