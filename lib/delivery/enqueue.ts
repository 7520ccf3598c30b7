import type { FastifyBaseLogger } from 'fastify'
import { invalid, thrownText, WechatQueueError } from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import type { MessageRecord, Status } from '../store/records.js'
import type { WechatStore } from '../store/types.js'
import type { LateUndo } from '../store/late-undo.js'
import type { PreparedMessage, ValueChange, Violation } from './message.js'
import { prepareMessage, snapshotMessage } from './message.js'
import { templateIdsOf } from './templates.js'
import type { TemplateRules } from './templates.js'
import type { MessageQueue, QueuedJob } from './queue.js'
import { AddInterruptedError, MaybeAddedError, ReplicasUnconfirmedError } from './queue.js'
import { enqueueOptions } from './call-options.js'
import { inFlightTtl } from './record-ttl.js'
import { newMessageId } from './sender.js'
import type { Credits } from './credits.js'
import type { MessageSource, RecordWriter } from './record-writer.js'
import { ENQUEUE_CHUNK, inChunks, partly, resultOf } from './enqueue-chunks.js'
import { KeyedEnqueue } from './keyed-enqueue.js'

export { ENQUEUE_CHUNK } from './enqueue-chunks.js'

export interface EnqueueOptions {
  /** a second enqueue with the same key returns the first message's id; for an array, `key:index` per item */
  idempotencyKey?: string
  /** ms before the first attempt */
  delay?: number
}

export interface EnqueueResult {
  id: string
  status: Status
  /** `validation: 'truncate'`: what was repaired in this message (as send()'s); only when something was, and only for a message queued by this call (not a repeat of an idempotency key) */
  changes?: ValueChange[]
  /** the idempotency key was used before: this is the first message (as it is now), nothing was queued again */
  duplicate?: true
}

/** A message that passed validation (and took its credit), with its id: its record and its job. */
export interface AdmittedMessage { record: MessageRecord, job: QueuedJob }

/**
 * The most messages one enqueue() takes: all are validated in one pass (blocking the event loop for
 * that long) and held in memory before any is queued, and under `credits: 'enforce'` each takes its
 * credit in turn. Larger sets: several calls.
 */
export const MAX_ENQUEUE = 10_000

/**
 * The queue side of Delivery (delivery.ts): messages validated, recorded and handed to the queue,
 * from `enqueue` and from handler pushes (`admit` and `queueAdmitted`).
 */
export class Enqueuer {
  /** enqueue() under an idempotency key (keyed-enqueue.ts); null with the queue off */
  private readonly keyed: KeyedEnqueue | null

  constructor (
    private readonly store: WechatStore,
    private readonly queue: MessageQueue | null,
    private readonly options: Pick<ResolvedOptions, 'defaults' | 'validation' | 'retentionSeconds'>,
    private readonly log: FastifyBaseLogger,
    private readonly ledger: Credits,
    private readonly records: RecordWriter,
    /** the account's template list (option `templates`): validation against it, when known */
    private readonly templates: TemplateRules | undefined,
    /** undoes keyed claims whose write timed out, even if they land late (Delivery owns it: closed there) */
    lateClaims: LateUndo
  ) {
    this.keyed = queue === null ? null : new KeyedEnqueue(store, queue, records, ledger, options.retentionSeconds, (prepared, ids) => this.reserveAll(prepared, ids), lateClaims)
  }

  /** `fastify.wechat.enqueue`: validated and recorded now, delivered by the queue with retries. */
  async enqueue (input: unknown, options?: EnqueueOptions, source: MessageSource = 'queue'): Promise<EnqueueResult[]> {
    if (!this.queue) throw new WechatQueueError('the queue is off (queue: false); use send() or turn the queue on')
    const isArray = isList(input)
    let list = isArray ? readList(input as unknown[]) : [input]
    const { key, delay } = enqueueOptions(options)
    const wait = this.templates?.prepare(templateIdsOf(list))
    if (wait !== undefined) {
      // read after the wait: as the caller handed them over, not as their objects are by then
      list = list.map(snapshotMessage)
      await wait
    }
    const prepared = isArray ? prepareList(list, this.options, this.templates?.lookup) : [prepareMessage(list[0], this.options, this.templates?.lookup)]

    // 'enforce': every message must hold a credit before it is accepted into the queue.
    if (key === undefined) {
      const ids = prepared.map(() => newMessageId())
      return this.enqueueFresh(prepared, ids, await this.reserveAll(prepared, ids), delay, source)
    }
    // With a key, the claims come first (keyed-enqueue.ts).
    return (this.keyed as KeyedEnqueue).enqueue(prepared, isArray, key, delay, source)
  }

  /**
   * Without an idempotency key the job goes first and its record second: a crash between the two
   * then leaves a job whose worker writes the missing record, never a record with no job (a message
   * accepted and never sent). A failed add leaves nothing behind, so a retry starts clean; an array of
   * several chunks keeps the chunks added before the failure, and the error names their messages.
   */
  private async enqueueFresh (prepared: PreparedMessage[], ids: readonly string[], reserved: boolean[], delay: number, source: MessageSource): Promise<EnqueueResult[]> {
    const now = this.records.nowIso()
    const batch = prepared.map((p, i) => this.admitted(ids[i] as string, p, reserved[i] === true, delay, source, now))
    // Chunk by chunk: `added` messages (a prefix, in input order) are in the queue and recorded.
    let added = 0
    try {
      for (; added < batch.length; added += ENQUEUE_CHUNK) await this.queueAdmitted(batch.slice(added, added + ENQUEUE_CHUNK))
    } catch (err) {
      // (unconfirmed by the replicas, the jobs may run: they keep their credits)
      const cause = (err as Error).cause
      const unconfirmed = cause instanceof MaybeAddedError
      const kept = unconfirmed ? Math.min(added + ENQUEUE_CHUNK, batch.length) : added
      await inChunks(batch.slice(kept), (chunk) => this.release(chunk))
      // One chunk (up to ENQUEUE_CHUNK messages), or nothing queued: queueAdmitted's error says it all.
      if (batch.length <= ENQUEUE_CHUNK || kept === 0) throw err
      const reason = cause instanceof Error ? cause.message : (err as Error).message
      throw Object.assign(new WechatQueueError(partly(kept, batch.length, unconfirmed, reason, 'messages'), { cause: err }), { messageIds: batch.slice(0, kept).map(({ record }) => record.id) })
    }
    return batch.map(({ record }, i) => resultOf(record.id, 'pending', (prepared[i] as PreparedMessage).changes))
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
    const now = this.records.nowIso()
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
      ? await Promise.all(valid.map(({ index, prepared }) => this.ledger.reserve(prepared.wire.touser, prepared.wire.template_id, (items[index] as { id: string }).id).catch((err: Error) => err)))
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
    let unconfirmed: MaybeAddedError | undefined
    try {
      await (this.queue as MessageQueue).add(batch.map(({ job }) => job))
    } catch (err) {
      if (!(err instanceof MaybeAddedError)) throw new WechatQueueError(`the queue did not accept it (${(err as Error).message})`, { cause: err })
      unconfirmed = err
    }
    await Promise.all(batch.map(({ record, job }) => this.store.createRecord(record, { ttlSeconds: inFlightTtl(this.options.retentionSeconds, job.delayMs) }).catch((err) => {
      this.log.warn({ messageId: record.id, reason: (err as Error).message }, 'wechat: queued, but the record write failed; the worker will write it')
    })))
    if (unconfirmed !== undefined) {
      // The master has the jobs, so they may run: their records are written as for any queued
      // message, and the error names them (status(id) tells what became of each).
      const ids = batch.map(({ record }) => record.id)
      const what = unconfirmed instanceof ReplicasUnconfirmedError ? 'the replicas did not confirm it' : unconfirmed instanceof AddInterruptedError ? 'the queue\'s connection broke during the add' : 'the queue did not answer in time'
      const error = new WechatQueueError(`${what} (${unconfirmed.message}); it may still be sent: see status() of ${ids.join(', ')}, and retry only under an idempotencyKey`, { cause: unconfirmed })
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
      record: this.records.newRecord(id, prepared, 'pending', source, now),
      job: { data: { id, wire: prepared.wire, reserved, source }, delayMs: delay, batchable: true }
    }
  }

  /** A credit for each message under 'enforce', all or none: if one has none, those taken go back. */
  private async reserveAll (prepared: readonly PreparedMessage[], ids: readonly string[]): Promise<boolean[]> {
    const reserved: boolean[] = []
    try {
      for (const [i, p] of prepared.entries()) reserved.push(await this.ledger.reserve(p.wire.touser, p.wire.template_id, ids[i]))
    } catch (err) {
      await Promise.all(reserved.map((taken, i) => taken ? this.ledger.settle((prepared[i] as PreparedMessage).wire.touser, (prepared[i] as PreparedMessage).wire.template_id, { status: 'failed' }, true) : undefined))
      throw err
    }
    return reserved
  }
}

/** Invalid messages of an array named in one error at most; the others are counted. */
const MAX_INVALID_NAMED = 10

/**
 * Every message of an array prepared, or one FST_WECHAT_INVALID_MESSAGE naming each invalid one by its
 * index (an audit: with up to 10,000 messages, an error naming only the field left the caller to find
 * the message); the first MAX_INVALID_NAMED are named, the rest counted.
 */
function prepareList (list: unknown[], options: Parameters<typeof prepareMessage>[1], lookup: Parameters<typeof prepareMessage>[2]): PreparedMessage[] {
  const prepared: PreparedMessage[] = []
  const violations: Violation[] = []
  let invalidCount = 0
  for (let index = 0; index < list.length; index++) {
    try {
      prepared.push(prepareMessage(list[index], options, lookup))
    } catch (err) {
      if (++invalidCount > MAX_INVALID_NAMED) continue
      for (const v of (err as { violations: Violation[] }).violations) violations.push({ ...v, index, message: `message ${index}: ${v.message}` })
    }
  }
  if (invalidCount === 0) return prepared
  if (invalidCount > MAX_INVALID_NAMED) violations.push({ key: 'messages', rule: 'invalid', message: `and ${invalidCount - MAX_INVALID_NAMED} more invalid messages` })
  throw invalid(violations)
}

/**
 * The messages of an array, as a dense copy read once: a hole is `undefined` (refused by validation
 * as that message, where map() skipped it and left its record without a job), and an array that
 * cannot be read (a Proxy whose length or items throw) is refused whole, before anything is claimed.
 */
function readList (input: unknown[]): unknown[] {
  const unreadable = (err: unknown): Error => invalid([{ key: 'messages', rule: 'type', message: `the messages could not be read (${thrownText(err)})` }])
  let length: number
  try {
    length = input.length
  } catch (err) {
    throw unreadable(err)
  }
  if (length > MAX_ENQUEUE) throw invalid([{ key: 'messages', rule: 'size', message: `at most ${MAX_ENQUEUE} messages per enqueue (got ${length})` }])
  const list: unknown[] = []
  try {
    for (let i = 0; i < length; i++) list.push(input[i])
  } catch (err) {
    throw unreadable(err)
  }
  return list
}

/** Array.isArray, except that a revoked Proxy (which makes it throw) is one message, which validation refuses. */
function isList (input: unknown): boolean {
  try {
    return Array.isArray(input)
  } catch {
    return false
  }
}
