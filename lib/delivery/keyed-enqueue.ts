import { WechatQueueError } from '../errors.js'
import type { MessageRecord } from '../store/records.js'
import type { WechatStore } from '../store/types.js'
import { LATE_CLAIM_WINDOW_MS } from '../store/late-undo.js'
import type { LateUndo } from '../store/late-undo.js'
import type { Credits } from './credits.js'
import type { EnqueueResult } from './enqueue.js'
import { ENQUEUE_CHUNK, inChunks, partly, resultOf } from './enqueue-chunks.js'
import type { PreparedMessage } from './message.js'
import type { MessageQueue } from './queue.js'
import { MaybeAddedError } from './queue.js'
import type { MessageSource, RecordWriter } from './record-writer.js'
import { newMessageId } from './sender.js'

/**
 * An enqueue under an idempotency key (enqueue.ts hands validated messages here). The claims come
 * first: each message's record is created under its key, so a repeat is answered with its first
 * message, and only a message queued now takes a credit. Whatever of the call is not queued in the
 * end is undone (records discarded, keys freed, credits back), so the same key can be tried again.
 */
export class KeyedEnqueue {
  constructor (
    private readonly store: WechatStore,
    private readonly queue: MessageQueue,
    private readonly records: RecordWriter,
    private readonly ledger: Credits,
    private readonly retentionSeconds: number,
    /** Enqueuer's: a credit for each message under 'enforce', all or none */
    private readonly reserveAll: (prepared: readonly PreparedMessage[], ids: readonly string[]) => Promise<boolean[]>,
    /** claims whose write failed, discarded even if they land late (store/late-undo.ts) */
    private readonly lateClaims: LateUndo
  ) {}

  async enqueue (prepared: PreparedMessage[], isArray: boolean, key: string, delay: number, source: MessageSource): Promise<EnqueueResult[]> {
    // (a repeat of a message that used the user's last credit is answered, not refused with a 409)
    const claims = await this.claimAll(prepared, isArray, key, delay, source)
    const created = claims.flatMap((claim, i) => claim.created ? [{ id: claim.record.id, key: claim.record.idempotencyKey, prepared: prepared[i] as PreparedMessage }] : [])
    const keyOf = new Map(created.map(({ id, key }) => [id, key]))
    let reserved: boolean[]
    try {
      reserved = await this.reserveAll(created.map((c) => c.prepared), created.map((c) => c.id))
    } catch (err) {
      // One has no credit: nothing of this call is queued (reserveAll gave the credits back); the claims are undone.
      // (undone even when the store does not answer now: see undoClaim)
      await inChunks(created, (chunk) => Promise.all(chunk.map(({ id, key }) => this.undoClaim(id, key))))
      throw err
    }
    const fresh = created.map(({ id, prepared: p }, i) => ({ data: { id, wire: p.wire, reserved: reserved[i], source }, delayMs: delay }))
    // A repeat whose first message is still 'pending' may have lost its job (a crash or a Redis
    // failover between the record and the queue add): add it again under the same id, which the
    // queue treats as a no-op when the job is there.
    const requeue = claims.flatMap((claim, i) => !claim.created && claim.record.status === 'pending' ? [{ data: { id: claim.record.id, wire: (prepared[i] as PreparedMessage).wire, source }, delayMs: delay }] : [])
    const queue = this.queue
    if (requeue.length > 0) {
      try {
        await inChunks(requeue, (chunk) => queue.add(chunk))
      } catch (err) {
        // Nothing new of this call is queued yet: its claims are undone and their credits go back,
        // so a retry with the same key queues them (they were left pending with no job, their credits taken).
        await this.undoFresh(fresh, keyOf)
        // (the earlier messages' jobs may be in the queue all the same: named, as a first add's are)
        if (err instanceof MaybeAddedError) throw Object.assign(new WechatQueueError(`${err.message}; retry with the same idempotencyKey`, { cause: err }), { messageIds: requeue.map((job) => job.data.id) })
        throw new WechatQueueError(`the queue did not accept it (${(err as Error).message})`, { cause: err })
      }
    }
    // The new messages go in chunk by chunk: `added` of them (a prefix, in input order) are in the queue.
    let added = 0
    try {
      for (; added < fresh.length; added += ENQUEUE_CHUNK) await queue.add(fresh.slice(added, added + ENQUEUE_CHUNK))
    } catch (err) {
      // Written to the master but not confirmed by its replicas (queue.replicas), not answered in
      // time (Redis stalled), or cut off after it was written (add-failure.ts): maybe queued. Their
      // records stay 'pending', so a retry with the same key re-adds the same job ids (a no-op where
      // they exist) instead of queueing a second message.
      const unconfirmed = err instanceof MaybeAddedError
      const kept = unconfirmed ? Math.min(added + ENQUEUE_CHUNK, fresh.length) : added
      // What was not queued (the failed chunk, unless unconfirmed, and those after it): undo the
      // records (and their idempotency keys) so a retry queues them. If the store is down too, mark
      // what remains failed rather than leave it pending forever. Their credits go back.
      const undone = fresh.slice(kept)
      await this.undoFresh(undone, keyOf)
      const messageIds = fresh.slice(0, kept).map((job) => job.data.id)
      const reason = (err as Error).message
      if (undone.length === 0 || kept === 0) {
        if (unconfirmed) throw Object.assign(new WechatQueueError(`${reason}; retry with the same idempotencyKey`, { cause: err }), { messageIds })
        throw new WechatQueueError(`the queue did not accept it (${reason})`, { cause: err })
      }
      // Some chunks went in, the rest did not: the same key queues the rest and answers the others as repeats.
      throw Object.assign(new WechatQueueError(`${partly(kept, fresh.length, unconfirmed, reason, 'new messages')}; retry with the same idempotencyKey`, { cause: err }), { messageIds })
    }
    return claims.map((claim, i) => resultOf(claim.record.id, claim.record.status, claim.created ? (prepared[i] as PreparedMessage).changes : undefined, !claim.created))
  }

  /**
   * The claims of an enqueue under a key, a chunk at a time: each message's record created under
   * `key` (or `key:index` in an array, even of one: the same message under the same key whether it
   * is enqueued alone in a list or with others). When the store fails part way, the records this call
   * created are discarded before the error goes on: they would stay 'pending' with no job, and a retry
   * under the key would answer them as repeats without taking their credits.
   */
  private async claimAll (prepared: PreparedMessage[], isArray: boolean, key: string, delay: number, source: MessageSource): Promise<Array<{ created: boolean, record: MessageRecord }>> {
    const claims: Array<{ created: boolean, record: MessageRecord }> = []
    let failure: { err: unknown } | undefined
    for (let start = 0; start < prepared.length && failure === undefined; start += ENQUEUE_CHUNK) {
      const chunk = prepared.slice(start, start + ENQUEUE_CHUNK).map((p, j) => ({ record: this.records.newRecord(newMessageId(), p, 'pending', source), key: isArray ? `${key}:${start + j}` : key }))
      const settled = await Promise.allSettled(chunk.map(({ record, key }) => this.records.createRecord(record, key, delay)))
      for (const [j, outcome] of settled.entries()) {
        if (outcome.status === 'fulfilled') {
          claims.push(outcome.value)
          continue
        }
        failure ??= { err: outcome.reason }
        // (the store did not answer: the claim may land late, a 'pending' record with no job, which
        // a retry under the key would re-queue without its credit)
        const { record, key: itsKey } = chunk[j] as { record: MessageRecord, key: string }
        this.undoClaim(record.id, itsKey).catch(() => {})
      }
    }
    if (failure === undefined) return claims
    const mine = claims.filter((claim) => claim.created)
    await inChunks(mine, (chunk) => Promise.all(chunk.map(({ record }) => this.undoClaim(record.id, record.idempotencyKey))))
    throw failure.err
  }

  /**
   * Discard a claim of this call (one atomic step with its key). When the store does not answer, the
   * discard still runs once it does (or is tried again until LATE_CLAIM_WINDOW_MS): the claim would
   * stay 'pending' with no job, and a retry under the key re-queue it without its credit. Answers
   * whether the first try went through.
   */
  private async undoClaim (id: string, key: string | undefined): Promise<boolean> {
    return this.lateClaims.run(() => this.store.discardRecord(id, 'pending', key), LATE_CLAIM_WINDOW_MS)
  }

  /**
   * New messages of a keyed enqueue that will not be queued after all: their records are discarded
   * (freeing their idempotency keys, so a retry queues them), or marked failed if the store cannot
   * discard them (rather than left pending for ever), and their credits go back.
   */
  private async undoFresh (undone: ReadonlyArray<{ data: { id: string, wire: PreparedMessage['wire'], reserved: boolean } }>, keyOf: ReadonlyMap<string, string | undefined>): Promise<void> {
    const now = this.records.nowIso()
    await inChunks(undone, (chunk) => Promise.allSettled(chunk.map(async (job) => {
      const discarded = await this.undoClaim(job.data.id, keyOf.get(job.data.id))
      if (!discarded) await this.store.updateRecord(job.data.id, { status: 'failed', errmsg: 'could not be queued' }, { ttlSeconds: this.retentionSeconds, now })
    })))
    await inChunks(undone, (chunk) => Promise.all(chunk.map((job) => job.data.reserved ? this.ledger.settle(job.data.wire.touser, job.data.wire.template_id, { status: 'failed' }, true) : undefined)))
  }
}
