import type { FastifyBaseLogger } from 'fastify'
import { abortable, sharedAbortController } from '../api/abort.js'
import { invalidArgument, thrownText, WechatQueueError, WechatStoreError, WechatUpstreamError } from '../errors.js'
import type { WechatUpstreamErrorInstance } from '../errors.js'
import type { Clock, ResolvedOptions } from '../options.js'
import type { MessageRecord, StatsSnapshot } from '../store/records.js'
import type { WechatStore } from '../store/types.js'
import { LATE_CLAIM_WINDOW_MS, LateUndo } from '../store/late-undo.js'
import type { PreparedMessage } from './message.js'
import { prepareMessage, snapshotMessage } from './message.js'
import { templateIdOf } from './templates.js'
import type { TemplateRules } from './templates.js'
import { lifecycleName, outcomeEvent } from '../lifecycle.js'
import type { EmitLifecycle } from '../lifecycle.js'
import type { MessageQueue } from './queue.js'
import { sendOptions } from './call-options.js'
import { newMessageId, pausedOutcome } from './sender.js'
import { localSendPause } from './send-pause.js'
import type { SendPause } from './send-pause.js'
import type { DeliveryOutcome, Sender, SendResult } from './sender.js'
import type { Credits } from './credits.js'
import { Enqueuer } from './enqueue.js'
import type { AdmittedMessage, EnqueueOptions, EnqueueResult } from './enqueue.js'
import { RecordRetries } from './record-retries.js'
import { RecordWriter } from './record-writer.js'
import type { MessageSource } from './record-writer.js'

export interface SendOptions {
  /** a second send with the same key returns the first message's result instead of sending again */
  idempotencyKey?: string
  signal?: AbortSignal
}

/**
 * What happens to a message (DESIGN.md "lib/delivery/"): validated before any call, recorded,
 * delivered now (`send`) or through the queue (`enqueue`), and its status kept up to date.
 */
export class Delivery {
  private readonly records: RecordWriter
  /** the queue side: enqueue, and the handler pushes' admit / queueAdmitted / release */
  private readonly enqueuer: Enqueuer

  constructor (
    private readonly sender: Sender,
    private readonly store: WechatStore,
    queue: MessageQueue | null,
    private readonly options: Pick<ResolvedOptions, 'defaults' | 'validation' | 'retry' | 'retentionSeconds'> & { clock: Clock },
    private readonly log: FastifyBaseLogger,
    private readonly ledger: Credits,
    /** the account's template list (option `templates`): validation against it, when known */
    private readonly templates?: TemplateRules,
    /** lifecycle events of direct sends (the job runner emits those of queued messages) */
    private readonly emit: EmitLifecycle = () => {},
    /** the 45009 pause direct sends share with the queue */
    private readonly sendPause: SendPause = localSendPause(options.clock)
  ) {
    this.records = new RecordWriter(store, options)
    this.enqueuer = new Enqueuer(store, queue, options, log, ledger, this.records, templates, this.lateClaims)
    this.heldRecords = new RecordRetries(log)
  }

  /** direct sends' final records whose write failed (the store down), written when it answers */
  private readonly heldRecords: RecordRetries

  /**
   * Aborted by close(): a send waiting out a backoff ends at once with its last attempt's outcome
   * (WeChat is about to become unreachable: the pool closes), and no new send starts.
   */
  private readonly closing = sharedAbortController()
  /** direct sends under way, and what close() waits on until they are none */
  private active = 0
  private idle: (() => void) | undefined

  /** `fastify.wechat.send`: calls WeChat now; resolves `{ id, msgid? }` or rejects with a coded error. */
  async send (message: unknown, options?: SendOptions): Promise<SendResult> {
    if (this.closing.signal.aborted) throw closedError()
    this.active++
    try {
      return await this.sendNow(message, options)
    } finally {
      if (--this.active === 0) this.idle?.()
    }
  }

  private async sendNow (message: unknown, options?: SendOptions): Promise<SendResult> {
    const { key, signal: callerSignal } = sendOptions(options)
    // (an aborted caller sends nothing; a call already on its way to WeChat is not cut off: see README)
    callerSignal?.throwIfAborted()
    const signal = callerSignal === undefined ? this.closing.signal : AbortSignal.any([callerSignal, this.closing.signal])
    if (this.templates !== undefined) {
      const templateId = templateIdOf(message)
      const wait = this.templates.prepare(templateId === undefined ? [] : [templateId])
      if (wait !== undefined) {
        // read after the wait: as the caller handed it over, not as its object is by then
        message = snapshotMessage(message)
        // (the caller giving up, or close(), ends the wait: nothing was claimed or sent yet)
        await abortable(wait, signal).catch((err: unknown) => { throw err === this.closing.signal.reason ? closedError() : err })
      }
    }
    const prepared = prepareMessage(message, this.options, this.templates?.lookup)
    const id = newMessageId()
    const { touser, template_id: templateId } = prepared.wire
    if (key !== undefined) {
      // The key is claimed before the credit and the call: a repeat of a message that went out is
      // its duplicate (even when that message used the user's last credit), and two concurrent sends
      // cannot both go out.
      const record = this.records.newRecord(id, prepared, 'sending', 'send')
      let claim = await this.claim(record, key)
      if (!claim.created && claim.record.status === 'failed') {
        // The key's message certainly failed (a queued one: its key is not freed when it fails, as a
        // direct send's is): the key is free, so this one goes out. Freed only if it still names that
        // message: of two sends doing this at once, one claims it and the other is its duplicate.
        await this.releaseKey(key, claim.record.id)
        claim = await this.claim(record, key)
      }
      if (!claim.created) return { id: claim.record.id, ...(claim.record.msgid ? { msgid: claim.record.msgid } : {}), duplicate: true }
    }
    // The ledger is asked only when its mode counts this template (no promise per send otherwise).
    let reserved = false
    try {
      if (this.ledger.reserves(templateId)) reserved = await this.ledger.reserve(touser, templateId, id)
    } catch (err) {
      // Refused (no credit) before anything went out: the claim must not keep the key.
      if (key !== undefined) await this.discardClaim(id, key)
      throw err
    }
    // (paused after a 45009, here or by the queue: not sent, failed as WeChat's 45009 would fail it)
    const calledAt = Date.now()
    const held = this.sendPause.held()
    const outcome = held === true || (held !== false && await held)
      ? pausedOutcome(id, this.options.clock.now())
      : await this.sender.deliver(id, prepared.wire, { attempts: this.options.retry.attempts, signal })
    // (subscribe/send's own 45009; the token endpoint's is held by the token manager: token-hold.ts)
    if (outcome.errorClass === 'quota' && outcome.attempts > 0 && (outcome.error as { code?: string } | undefined)?.code === 'FST_WECHAT_API') this.sendPause.met(calledAt)
    // close() aborted it before the call left: its own copy of the closing error, naming the message
    if (outcome.error !== undefined && outcome.error === this.closing.signal.reason) outcome.error = Object.assign(closedError(), { messageId: id })
    if (this.ledger.counts(templateId)) await this.ledger.settle(touser, templateId, outcome, reserved)
    this.track(this.recordOutcome(id, prepared, outcome, key !== undefined))
    // Certainly not sent: the key is free again, so a retry under it sends (instead of answering a
    // "duplicate" of a message that never went out). An 'unknown' one keeps its key: it may be delivered.
    if (key !== undefined && outcome.status === 'failed') await this.releaseKey(key, id)
    this.emit(lifecycleName(outcome.status), () => outcomeEvent(id, prepared.wire, outcome, outcome.attempts, 'send'))
    if (outcome.status !== 'sent') throw outcome.error
    const result: SendResult = { id }
    if (outcome.msgid !== undefined) result.msgid = outcome.msgid
    if (prepared.changes.length > 0) result.changes = prepared.changes
    return result
  }

  /** `fastify.wechat.enqueue`: validated and recorded now, delivered by the queue with retries (enqueue.ts). */
  async enqueue (input: unknown, options?: EnqueueOptions, source: MessageSource = 'queue'): Promise<EnqueueResult[]> {
    return this.enqueuer.enqueue(input, options, source)
  }

  /** Handler pushes (lib/http/handler-pushes.ts): each message checked alone (Enqueuer.admit). */
  async admit (items: ReadonlyArray<{ id: string, message: unknown }>, source: MessageSource): Promise<{ admitted: AdmittedMessage[], refused: Array<{ index: number, error: Error }> }> {
    return this.enqueuer.admit(items, source)
  }

  /** Queue admitted messages; safe to repeat with the same batch (Enqueuer.queueAdmitted). */
  async queueAdmitted (batch: readonly AdmittedMessage[]): Promise<void> {
    return this.enqueuer.queueAdmitted(batch)
  }

  /** Messages that will not be queued after all: the credits they took go back. */
  async release (batch: readonly AdmittedMessage[]): Promise<void> {
    return this.enqueuer.release(batch)
  }

  /**
   * The final record write of a direct send is not awaited: WeChat has answered, and a later
   * status(id) is queued behind it on the same connection, so it still reads its own write.
   * close() waits for the writes still under way.
   */
  private readonly writes = new Set<Promise<void>>()

  private track (write: Promise<void>): void {
    this.writes.add(write)
    write.then(() => this.writes.delete(write), () => this.writes.delete(write))
  }

  /** close(): direct sends end (those in a backoff at once), then their record writes are waited for (held ones get one last try). */
  async flush (): Promise<void> {
    this.closing.abort(closedError())
    if (this.active > 0) await new Promise<void>((resolve) => { this.idle = resolve })
    await Promise.allSettled([...this.writes])
    await this.heldRecords.close()
    this.lateClaims.close()
  }

  async status (id: string): Promise<MessageRecord | null> {
    // (a string no message has is answered null; what is no string at all is a caller's bug, said so)
    if (typeof id !== 'string') throw invalidArgument([{ key: 'id', rule: 'type', message: `status() takes a message id, a string (got ${typeof id})` }])
    if (id.length === 0 || id.length > 200) return null
    return this.read(() => this.store.getRecord(id))
  }

  async credits (openid: string): Promise<Record<string, number>> {
    if (typeof openid !== 'string') throw invalidArgument([{ key: 'openid', rule: 'type', message: `credits() takes an openid, a string (got ${typeof openid})` }])
    if (openid.length === 0 || openid.length > 128) return {}
    return this.read(() => this.ledger.of(openid))
  }

  async stats (): Promise<StatsSnapshot> {
    return this.read(() => this.store.stats())
  }

  /** Reads that fail because the store is down become FST_WECHAT_STORE (503), not raw Redis errors. */
  private async read<T> (read: () => Promise<T>): Promise<T> {
    try {
      return await read()
    } catch (err) {
      throw new WechatStoreError(`could not read the records (${(err as Error).message})`, { cause: err })
    }
  }

  /**
   * A keyed send's claim. One whose write failed (the store did not answer in time) may still land
   * later as a 'sending' record under the key, and every retry under the key would be answered as
   * its duplicate though nothing went out: it is discarded even then (store/late-undo.ts).
   */
  private async claim (record: MessageRecord, key: string): Promise<{ created: boolean, record: MessageRecord }> {
    try {
      return await this.records.createRecord(record, key)
    } catch (err) {
      this.lateClaims.run(() => this.store.discardRecord(record.id, 'sending', key), LATE_CLAIM_WINDOW_MS)
      // (a direct send queues nothing: say what failed and that nothing went out; the code stays FST_WECHAT_QUEUE)
      const reason = err instanceof Error && err.cause instanceof Error ? err.cause.message : thrownText(err)
      throw new WechatQueueError(`this send's idempotencyKey could not be claimed, so nothing was sent: the store is unavailable (${reason})`, { cause: err })
    }
  }

  /** keyed sends' claims whose write failed, discarded even if they land late */
  private readonly lateClaims = new LateUndo()

  private async discardClaim (id: string, key: string): Promise<void> {
    try {
      if (await this.store.discardRecord(id, 'sending', key)) return
      this.log.warn({ messageId: id }, 'wechat: could not undo the claim of a refused send; a retry under its idempotency key answers it as a duplicate until the key expires')
    } catch {
      // the store did not answer: undone when it does (the discard may run late, or not at all)
      this.lateClaims.run(() => this.store.discardRecord(id, 'sending', key), LATE_CLAIM_WINDOW_MS)
    }
  }

  private async releaseKey (key: string, id: string): Promise<void> {
    try {
      await this.store.releaseIdempotencyKey(key, id)
    } catch (err) {
      // the store is down: a retry under this key answers the failed message as a duplicate until the key expires
      this.log.warn({ messageId: id, reason: (err as Error).message }, 'wechat: could not free the idempotency key of a failed send')
    }
  }

  /** One write per direct send, not awaited by it (deferred): the final state (or the update of the claimed record). */
  private async recordOutcome (id: string, prepared: PreparedMessage, outcome: DeliveryOutcome, claimed: boolean): Promise<void> {
    // Built once: a write held for the store (below) keeps the send's own times.
    let write: (deferred: boolean) => Promise<unknown>
    if (claimed) {
      const patch = { status: outcome.status, attempts: outcome.attempts, msgid: outcome.msgid, errcode: outcome.errcode, errmsg: outcome.errmsg }
      const now = this.records.nowIso()
      write = (deferred) => this.store.updateRecord(id, patch, { ttlSeconds: this.options.retentionSeconds, now, deferred })
    } else {
      const record = this.records.newRecord(id, prepared, outcome.status, 'send')
      record.attempts = outcome.attempts
      if (outcome.msgid !== undefined) record.msgid = outcome.msgid
      if (outcome.errcode !== undefined) record.errcode = outcome.errcode
      if (outcome.errmsg !== undefined) record.errmsg = outcome.errmsg
      write = (deferred) => this.store.createRecord(record, { ttlSeconds: this.options.retentionSeconds, deferred })
    }
    try {
      await write(true)
    } catch (err) {
      // WeChat already answered: the store being down must not turn a delivered message into an
      // error, nor lose its record. It is held and written when the store answers (record-retries.ts).
      this.heldRecords.hold({ id, write: () => write(false) }, err)
    }
  }
}

function closedError (): Error {
  const error = new WechatUpstreamError('the app is closing (app.close()): WeChat is not called any more') as WechatUpstreamErrorInstance
  Object.assign(error, { ambiguous: false, timedOut: false, outcome: 'failed' })
  return error
}
