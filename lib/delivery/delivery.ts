import type { FastifyBaseLogger } from 'fastify'
import { invalid, WechatQueueError, WechatStoreError } from '../errors.js'
import type { Clock, ResolvedOptions } from '../options.js'
import type { MessageRecord, StatsSnapshot, Status } from '../store/records.js'
import type { WechatStore } from '../store/types.js'
import type { PreparedMessage } from './message.js'
import { prepareMessage } from './message.js'
import { templateIdOf, templateIdsOf } from './templates.js'
import type { TemplateRules } from './templates.js'
import { lifecycleName, outcomeEvent } from '../lifecycle.js'
import type { EmitLifecycle } from '../lifecycle.js'
import type { MessageQueue, QueuedJob } from './queue.js'
import { ReplicasUnconfirmedError } from './queue.js'
import { enqueueOptions, sendOptions } from './call-options.js'
import { inFlightTtl } from './record-ttl.js'
import { newMessageId } from './sender.js'
import type { DeliveryOutcome, Sender, SendResult } from './sender.js'
import type { Credits } from './credits.js'

export interface SendOptions {
  /** a second send with the same key returns the first message's result instead of sending again */
  idempotencyKey?: string
  signal?: AbortSignal
}

export interface EnqueueOptions {
  /** a second enqueue with the same key returns the first message's id; for an array, `key:index` per item */
  idempotencyKey?: string
  /** ms before the first attempt */
  delay?: number
}

export interface EnqueueResult { id: string, status: Status }

export type MessageSource = 'send' | 'queue' | 'hook'

/** A message that passed validation (and took its credit), with its id: its record and its job. */
export interface AdmittedMessage { record: MessageRecord, job: QueuedJob }

const MAX_BATCH = 500

/**
 * What happens to a message (DESIGN.md "lib/delivery/"): validated before any call, recorded,
 * delivered now (`send`) or through the queue (`enqueue`), and its status kept up to date.
 */
export class Delivery {
  constructor (
    private readonly sender: Sender,
    private readonly store: WechatStore,
    private readonly queue: MessageQueue | null,
    private readonly options: Pick<ResolvedOptions, 'defaults' | 'validation' | 'retry' | 'retentionSeconds'> & { clock: Clock },
    private readonly log: FastifyBaseLogger,
    private readonly ledger: Credits,
    /** the account's template list (option `templates`): validation against it, when known */
    private readonly templates?: TemplateRules,
    /** lifecycle events of direct sends (the job runner emits those of queued messages) */
    private readonly emit: EmitLifecycle = () => {}
  ) {}

  /** `fastify.wechat.send`: calls WeChat now; resolves `{ id, msgid? }` or rejects with a coded error. */
  async send (message: unknown, options?: SendOptions): Promise<SendResult> {
    const { key, signal } = sendOptions(options)
    // (an aborted caller sends nothing; a call already on its way to WeChat is not cut off: see README)
    signal?.throwIfAborted()
    if (this.templates !== undefined) {
      const templateId = templateIdOf(message)
      const wait = this.templates.prepare(templateId === undefined ? [] : [templateId])
      if (wait !== undefined) await wait
    }
    const prepared = prepareMessage(message, this.options, this.templates?.lookup)
    const id = newMessageId()
    const { touser, template_id: templateId } = prepared.wire
    if (key !== undefined) {
      // The key is claimed before the credit and the call: a repeat of a message that went out is
      // its duplicate (even when that message used the user's last credit), and two concurrent sends
      // cannot both go out.
      const claim = await this.createRecord(this.newRecord(id, prepared, 'sending', 'send'), key)
      if (!claim.created) return { id: claim.record.id, ...(claim.record.msgid ? { msgid: claim.record.msgid } : {}), duplicate: true }
    }
    // The ledger is asked only when its mode counts this template (no promise per send otherwise).
    let reserved = false
    try {
      if (this.ledger.reserves(templateId)) reserved = await this.ledger.reserve(touser, templateId)
    } catch (err) {
      // Refused (no credit) before anything went out: the claim must not keep the key.
      if (key !== undefined) await this.discardClaim(id)
      throw err
    }
    const outcome = await this.sender.deliver(id, prepared.wire, { attempts: this.options.retry.attempts, signal })
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

  /** `fastify.wechat.enqueue`: validated and recorded now, delivered by the queue with retries. */
  async enqueue (input: unknown, options?: EnqueueOptions, source: MessageSource = 'queue'): Promise<EnqueueResult[]> {
    if (!this.queue) throw new WechatQueueError('the queue is off (queue: false); use send() or turn the queue on')
    const list = isList(input) ? input as unknown[] : [input]
    if (list.length > MAX_BATCH) throw invalid([{ key: 'messages', rule: 'size', message: `at most ${MAX_BATCH} messages per enqueue (got ${list.length})` }])
    const { key, delay } = enqueueOptions(options)
    const wait = this.templates?.prepare(templateIdsOf(list))
    if (wait !== undefined) await wait
    const prepared = list.map((message) => prepareMessage(message, this.options, this.templates?.lookup))

    // 'enforce': every message must hold a credit before it is accepted into the queue.
    if (key === undefined) return this.enqueueFresh(prepared, await this.reserveAll(prepared), delay, source)
    // With a key, the claims come first: a repeat is answered with its first message, and only a
    // message queued now takes a credit (a repeat of one that used the user's last credit is not a 409).
    const claims = await Promise.all(prepared.map((p, i) => {
      // (an array, even of one, keys its items `key:index`: the same message under the same key
      // whether it is enqueued alone in a list or with others; `list` is `input` itself when it is one)
      const itemKey = list === input ? `${key}:${i}` : key
      return this.createRecord(this.newRecord(newMessageId(), p, 'pending', source), itemKey, delay)
    }))
    const created = claims.flatMap((claim, i) => claim.created ? [{ id: claim.record.id, prepared: prepared[i] as PreparedMessage }] : [])
    let reserved: boolean[]
    try {
      reserved = await this.reserveAll(created.map((c) => c.prepared))
    } catch (err) {
      // One has no credit: nothing of this call is queued (reserveAll gave the credits back); the claims are undone.
      await Promise.all(created.map(({ id }) => this.store.discardRecord(id).catch(() => false)))
      throw err
    }
    const fresh = created.map(({ id, prepared: p }, i) => ({ data: { id, wire: p.wire, reserved: reserved[i], source }, delayMs: delay }))
    // A repeat whose first message is still 'pending' may have lost its job (a crash or a Redis
    // failover between the record and the queue add): add it again under the same id, which the
    // queue treats as a no-op when the job is there.
    const requeue = claims.flatMap((claim, i) => !claim.created && claim.record.status === 'pending' ? [{ data: { id: claim.record.id, wire: (prepared[i] as PreparedMessage).wire, source }, delayMs: delay }] : [])
    if (requeue.length > 0) {
      await (this.queue as MessageQueue).add(requeue).catch((err) => {
        throw new WechatQueueError(`the queue did not accept it (${(err as Error).message})`, { cause: err })
      })
    }
    try {
      if (fresh.length > 0) await (this.queue as MessageQueue).add(fresh)
    } catch (err) {
      // Written to the master but not confirmed by its replicas (queue.replicas): maybe queued. The
      // records stay 'pending', so a retry with the same key re-adds the same job ids (a no-op where
      // they exist) instead of queueing a second message.
      if (err instanceof ReplicasUnconfirmedError) throw Object.assign(new WechatQueueError(`${err.message}; retry with the same idempotencyKey`, { cause: err }), { messageIds: fresh.map((job) => job.data.id) })
      // Nothing was queued: undo the records (and their idempotency keys) so a retry starts clean.
      // If the store is down too, mark what remains failed rather than leave it pending forever.
      const now = this.nowIso()
      await Promise.allSettled(fresh.map(async (job) => {
        const discarded = await this.store.discardRecord(job.data.id).catch(() => false)
        if (!discarded) await this.store.updateRecord(job.data.id, { status: 'failed', errmsg: 'could not be queued' }, { ttlSeconds: this.options.retentionSeconds, now })
      }))
      await Promise.all(fresh.map((job) => job.data.reserved ? this.ledger.settle(job.data.wire.touser, job.data.wire.template_id, { status: 'failed' }, true) : undefined))
      throw new WechatQueueError(`the queue did not accept it (${(err as Error).message})`, { cause: err })
    }
    return claims.map((claim) => ({ id: claim.record.id, status: claim.record.status }))
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

  async flush (): Promise<void> {
    await Promise.allSettled([...this.writes])
  }

  /**
   * Without an idempotency key the job goes first and its record second: a crash between the two
   * then leaves a job whose worker writes the missing record, never a record with no job (a message
   * accepted and never sent). A failed add leaves nothing behind, so a retry starts clean.
   */
  private async enqueueFresh (prepared: PreparedMessage[], reserved: boolean[], delay: number, source: MessageSource): Promise<EnqueueResult[]> {
    const now = this.nowIso()
    const batch = prepared.map((p, i) => this.admitted(newMessageId(), p, reserved[i] === true, delay, source, now))
    try {
      await this.queueAdmitted(batch)
    } catch (err) {
      // (unconfirmed by the replicas, the jobs may run: they keep their credits)
      if (!((err as Error).cause instanceof ReplicasUnconfirmedError)) await this.release(batch)
      throw err
    }
    return batch.map(({ record }) => ({ id: record.id, status: 'pending' as const }))
  }

  /**
   * Handler pushes (lib/http/handler-pushes.ts): each message checked alone under the id it was
   * given when its response was sent, so an invalid message (or one without credit under
   * `credits: 'enforce'`) is refused without taking the others down. What passes is queued with
   * queueAdmitted(), which may be repeated with the same batch.
   */
  async admit (items: ReadonlyArray<{ id: string, message: unknown }>, source: MessageSource): Promise<{ admitted: AdmittedMessage[], refused: Array<{ index: number, error: Error }> }> {
    if (!this.queue) throw new WechatQueueError('the queue is off (queue: false); use send() or turn the queue on')
    const messages = items.map((item) => item.message)
    const wait = this.templates?.prepare(templateIdsOf(messages))
    if (wait !== undefined) await wait
    const admitted: AdmittedMessage[] = []
    const now = this.nowIso()
    const refused: Array<{ index: number, error: Error }> = []
    const valid: Array<{ index: number, prepared: PreparedMessage }> = []
    for (let index = 0; index < items.length; index++) {
      try {
        valid.push({ index, prepared: prepareMessage(messages[index], this.options, this.templates?.lookup) })
      } catch (err) {
        refused.push({ index, error: err as Error })
      }
    }
    // 'enforce' only: a credit per message, taken before it is accepted into the queue.
    const reserved = this.ledger.mode === 'enforce'
      ? await Promise.all(valid.map(({ prepared }) => this.ledger.reserve(prepared.wire.touser, prepared.wire.template_id).catch((err: Error) => err)))
      : undefined
    for (let i = 0; i < valid.length; i++) {
      const { index, prepared } = valid[i] as { index: number, prepared: PreparedMessage }
      const credit = reserved?.[i] ?? false
      if (credit instanceof Error) refused.push({ index, error: credit })
      else admitted.push(this.admitted((items[index] as { id: string }).id, prepared, credit, 0, source, now))
    }
    return { admitted, refused }
  }

  /**
   * Queue admitted messages: one queue add for all (BullMQ addBulk), then their records. Throws
   * FST_WECHAT_QUEUE when the add fails, and leaves the credits taken: repeating it with the same
   * batch is safe, since every message keeps its id (the queue ignores a job id it holds, the store
   * a record it has, and the job runner a job whose record is already final), so an add whose
   * answer was lost does not become a second message. release() gives the credits back.
   */
  async queueAdmitted (batch: readonly AdmittedMessage[]): Promise<void> {
    if (batch.length === 0) return
    let unconfirmed: ReplicasUnconfirmedError | undefined
    try {
      await (this.queue as MessageQueue).add(batch.map(({ job }) => job))
    } catch (err) {
      if (!(err instanceof ReplicasUnconfirmedError)) throw new WechatQueueError(`the queue did not accept it (${(err as Error).message})`, { cause: err })
      unconfirmed = err
    }
    await Promise.all(batch.map(({ record, job }) => this.store.createRecord(record, { ttlSeconds: inFlightTtl(this.options.retentionSeconds, job.delayMs) }).catch((err) => {
      this.log.warn({ messageId: record.id, reason: (err as Error).message }, 'wechat: queued, but the record write failed; the worker will write it')
    })))
    if (unconfirmed !== undefined) {
      // The master has the jobs, so they may run: their records are written as for any queued
      // message, and the error names them (status(id) tells what became of each).
      const ids = batch.map(({ record }) => record.id)
      const error = new WechatQueueError(`the replicas did not confirm it (${unconfirmed.message}); it may still be sent: see status() of ${ids.join(', ')}, and retry only under an idempotencyKey`, { cause: unconfirmed })
      throw Object.assign(error, { messageIds: ids })
    }
  }

  /** Messages that will not be queued after all: the credits they took go back. */
  async release (batch: readonly AdmittedMessage[]): Promise<void> {
    await Promise.all(batch.map(({ job }) => job.data.reserved === true ? this.ledger.settle(job.data.wire.touser, job.data.wire.template_id, { status: 'failed' }, true) : undefined))
  }

  /** A message queued without an idempotency key (those build their jobs in enqueue()), so `batchable` (queue.ts). */
  private admitted (id: string, prepared: PreparedMessage, reserved: boolean, delay: number, source: MessageSource, now: string): AdmittedMessage {
    return {
      record: this.newRecord(id, prepared, 'pending', source, now),
      job: { data: { id, wire: prepared.wire, reserved, source }, delayMs: delay, batchable: true }
    }
  }

  async status (id: string): Promise<MessageRecord | null> {
    if (typeof id !== 'string' || id.length === 0 || id.length > 200) return null
    return this.read(() => this.store.getRecord(id))
  }

  async credits (openid: string): Promise<Record<string, number>> {
    if (typeof openid !== 'string' || openid.length === 0 || openid.length > 128) return {}
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

  /** A record of a message on its way (pending, or sending for a direct send), under its idempotency key. */
  private async createRecord (record: MessageRecord, idempotencyKey: string | undefined, delayMs = 0): Promise<{ created: boolean, record: MessageRecord }> {
    try {
      return await this.store.createRecord(record, { ttlSeconds: inFlightTtl(this.options.retentionSeconds, delayMs), idempotencyKey })
    } catch (err) {
      throw new WechatQueueError(`the store is unavailable (${(err as Error).message})`, { cause: err })
    }
  }

  /** A credit for each message under 'enforce', all or none: if one has none, those taken go back. */
  private async reserveAll (prepared: readonly PreparedMessage[]): Promise<boolean[]> {
    const reserved: boolean[] = []
    try {
      for (const p of prepared) reserved.push(await this.ledger.reserve(p.wire.touser, p.wire.template_id))
    } catch (err) {
      await Promise.all(reserved.map((taken, i) => taken ? this.ledger.settle((prepared[i] as PreparedMessage).wire.touser, (prepared[i] as PreparedMessage).wire.template_id, { status: 'failed' }, true) : undefined))
      throw err
    }
    return reserved
  }

  private async discardClaim (id: string): Promise<void> {
    const discarded = await this.store.discardRecord(id, 'sending').catch(() => false)
    if (!discarded) this.log.warn({ messageId: id }, 'wechat: could not undo the claim of a refused send; a retry under its idempotency key answers it as a duplicate until the key expires')
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
    try {
      if (claimed) {
        const patch = { status: outcome.status, attempts: outcome.attempts, msgid: outcome.msgid, errcode: outcome.errcode, errmsg: outcome.errmsg }
        await this.store.updateRecord(id, patch, { ttlSeconds: this.options.retentionSeconds, now: this.nowIso(), deferred: true })
      } else {
        const record = this.newRecord(id, prepared, outcome.status, 'send')
        record.attempts = outcome.attempts
        if (outcome.msgid !== undefined) record.msgid = outcome.msgid
        if (outcome.errcode !== undefined) record.errcode = outcome.errcode
        if (outcome.errmsg !== undefined) record.errmsg = outcome.errmsg
        await this.store.createRecord(record, { ttlSeconds: this.options.retentionSeconds, deferred: true })
      }
    } catch (err) {
      // WeChat already answered; losing the record must not turn a delivered message into an error.
      this.log.warn({ messageId: id, reason: (err as Error).message }, 'wechat: could not write the message record')
    }
  }

  private newRecord (id: string, prepared: PreparedMessage, status: Status, source: MessageSource, now = this.nowIso()): MessageRecord {
    return { id, status, templateId: prepared.wire.template_id, toUser: prepared.wire.touser, attempts: 0, createdAt: now, updatedAt: now, source }
  }

  /** The last ISO time made: many sends finish within the same millisecond. */
  private lastIso = { ms: NaN, iso: '' }

  private nowIso (): string {
    const ms = this.options.clock.now()
    if (ms !== this.lastIso.ms) this.lastIso = { ms, iso: new Date(ms).toISOString() }
    return this.lastIso.iso
  }
}

/** Array.isArray, except that a revoked Proxy (which makes it throw) is one message, which validation refuses. */
function isList (input: unknown): boolean {
  try {
    return Array.isArray(input)
  } catch {
    return false
  }
}
