import type { FastifyBaseLogger } from 'fastify'
import { sleep } from '../api/backoff.js'
import type { Delivery } from '../delivery/delivery.js'
import type { AdmittedMessage } from '../delivery/enqueue.js'
import { newMessageId } from '../delivery/sender.js'
import { MaybeAddedError, ReplicasUnconfirmedError } from '../delivery/queue.js'
import { within } from '../delivery/within.js'

/** How long a handler push keeps trying to reach the queue (Redis restarting, failing over). */
export const RETRY_WINDOW_MS = 5 * 60_000
/** How long close() waits for pushes still trying before it gives up on them (and logs each). */
const DRAIN_MS = 10_000
/** At most this many pushes per flush (one BullMQ addBulk); a full batch is flushed at once... */
export const FLUSH_AT = 200
/**
 * ...else FLUSH_DELAY_MS after its first push. A flush costs a few Redis round trips (socket writes
 * and reads are most of a push's cost) whatever its size, so at an ordinary rate (1,000 req/s: ~10
 * pushes per flush) waiting a little saves most of them. A push is in the queue within about this
 * delay plus the round trips; it is also all a SIGKILL can take from the buffer while Redis is up.
 */
export const FLUSH_DELAY_MS = 10
/**
 * Pushes at most waiting in this process for the queue (Redis unreachable): beyond, a push is
 * refused (logged and counted failed) rather than memory growing for as long as the outage lasts.
 */
export const MAX_WAITING = 100_000

/** A push accepted in onSend: its message id is assigned there and kept through every retry. */
interface Accepted { id: string, message: unknown, log: FastifyBaseLogger, at: number }

/** Counters an operator can read (`fastify.wechat.handlerPushes()`), since the app started. */
export interface HandlerPushCounters {
  /** in the queue (and recorded) */
  queued: number
  /** not queued because the response status was >= 400 */
  skipped: number
  /** given up: invalid, no credit under `credits: 'enforce'`, a throwing config.wechatPush, or the queue unreachable for 5 minutes */
  failed: number
  /** accepted and still only in this process's memory: buffered, or retrying while the queue is unreachable */
  waiting: number
}

/**
 * The in-process buffer between onSend and the queue. accept() is synchronous and cheap (an id and
 * an array push). One flush runs at a time: it takes up to FLUSH_AT pushes, has each validated
 * alone (Delivery.admit: an invalid one fails by itself) and queues the valid ones with one queue
 * add and one batch of record writes. Pushes that arrive meanwhile wait for the next flush, so the
 * batches grow with the load instead of Redis commands piling up unanswered in memory (with one
 * flush per turn of the event loop, a saturated app accepted pushes faster than it got to queue
 * them, and its heap grew by hundreds of MB). A flush that cannot reach the queue is retried under
 * the same ids until its oldest push is RETRY_WINDOW_MS old.
 */
export class PushBatcher {
  readonly counters: HandlerPushCounters = { queued: 0, skipped: 0, failed: 0, waiting: 0 }
  private buffer: Accepted[] = []
  private timer: NodeJS.Timeout | null = null
  private flushing: Promise<void> | null = null
  private readonly aside = new Set<Promise<void>>()
  private readonly stop = new AbortController()
  /** drain() has ended: a push accepted now would wait for a queue that is closing */
  private closed = false
  /** The logger of the latest push (close() has no request to log with). */
  private lastLog: FastifyBaseLogger | null = null
  /** when the buffer-full error was last logged (at most once a second) */
  private overflowLoggedAt = 0

  constructor (private readonly delivery: Delivery) {}

  /** Give each push its id and buffer it (`list`: copies of the messages, handler-pushes.ts copyMessages). */
  accept (log: FastifyBaseLogger, list: readonly unknown[]): void {
    const at = Date.now()
    this.lastLog = log
    if (this.stop.signal.aborted || this.closed) {
      // an async config.wechatPush that settled after close() gave up waiting for it, or a push made
      // after close() finished (a handler that pushes after its reply went out)
      this.counters.failed += list.length
      log.error({ count: list.length }, 'wechat: a handler push came after close() stopped waiting for pushes; not queued')
      return
    }
    if (this.counters.waiting + list.length > MAX_WAITING) {
      // The queue has been unreachable for a while and the buffer is full: memory is bounded.
      this.counters.failed += list.length
      if (at - this.overflowLoggedAt >= 1000) {
        this.overflowLoggedAt = at
        log.error({ count: list.length, waiting: this.counters.waiting }, `wechat: ${MAX_WAITING} handler pushes already wait for the queue; this one is not queued`)
      }
      return
    }
    for (const message of list) this.buffer.push({ id: newMessageId(), message, log, at })
    this.counters.waiting += list.length
    this.schedule()
  }

  /** Work that may still accept pushes (an async config.wechatPush): close() waits for it. */
  track (work: Promise<void>): void {
    this.aside.add(work)
    work.finally(() => this.aside.delete(work)).catch(() => {})
  }

  private schedule (): void {
    if (this.flushing !== null || this.buffer.length === 0) return
    const oldest = (this.buffer[0] as Accepted).at
    const wait = this.buffer.length >= FLUSH_AT ? 0 : oldest + FLUSH_DELAY_MS - Date.now()
    if (wait <= 0) { this.flush(); return }
    this.timer ??= setTimeout(() => { this.timer = null; this.flush() }, wait)
  }

  private flush (): void {
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null }
    if (this.flushing !== null || this.buffer.length === 0) return
    const batch = this.buffer.length <= FLUSH_AT ? this.buffer : this.buffer.slice(0, FLUSH_AT)
    this.buffer = this.buffer.length <= FLUSH_AT ? [] : this.buffer.slice(FLUSH_AT)
    this.flushing = this.queueBatch(batch).catch((err: Error) => {
      // queueBatch settles every push itself (queued, or logged and counted as lost): only a bug gets
      // here, and the pushes it held must not vanish without a word.
      const log = (batch[0] as Accepted).log
      log.error({ messageIds: batch.map((push) => push.id), reason: err.message }, 'wechat: a batch of handler pushes failed unexpectedly; they may not be queued')
    }).finally(() => {
      this.flushing = null
      this.schedule()
    })
  }

  private async queueBatch (batch: Accepted[]): Promise<void> {
    let admitted: AdmittedMessage[]
    try {
      const answer = await this.delivery.admit(batch, 'hook')
      for (const { index, error } of answer.refused) this.lost(batch[index] as Accepted, error)
      admitted = answer.admitted
    } catch (err) {
      // Only the store failing under credits: 'enforce' gets here; nothing was taken.
      for (const push of batch) this.lost(push, err as Error)
      return
    }
    const deadline = (batch[0] as Accepted).at + RETRY_WINDOW_MS
    /** an add was sent that Redis may still run (it did not answer in time: AddUnansweredError) */
    let maybeAdded = false
    for (let attempt = 1; ; attempt++) {
      try {
        await this.delivery.queueAdmitted(admitted)
        this.counters.queued += admitted.length
        this.counters.waiting -= admitted.length
        return
      } catch (err) {
        if ((err as Error).cause instanceof ReplicasUnconfirmedError) {
          // The jobs are on the master and their records written (queue.replicas did not confirm):
          // they run like any queued push, with their credits; counted queued, said once.
          this.counters.queued += admitted.length
          this.counters.waiting -= admitted.length
          ;(batch[0] as Accepted).log.warn({ messageIds: admitted.map(({ record }) => record.id), reason: (err as Error).message }, 'wechat: handler pushes queued but not confirmed by the replicas (queue.replicas)')
          return
        }
        maybeAdded ||= (err as Error).cause instanceof MaybeAddedError
        if ((Date.now() >= deadline || this.stop.signal.aborted) && maybeAdded) {
          // One of the adds may still run (a stalled Redis runs it when it wakes): the pushes may be
          // queued, with their records written and their credits taken, so nothing is given back
          // (it was: the job then ran on another instance with its credit refunded).
          this.counters.queued += admitted.length
          this.counters.waiting -= admitted.length
          ;(batch[0] as Accepted).log.warn({ messageIds: admitted.map(({ record }) => record.id), reason: (err as Error).message }, 'wechat: handler pushes may not be queued: Redis never answered their add, which may have run (see status(id))')
          return
        }
        if (Date.now() >= deadline || this.stop.signal.aborted) {
          const byId = new Map(batch.map((push) => [push.id, push]))
          for (const { record } of admitted) this.lost(byId.get(record.id) as Accepted, err as Error)
          await this.delivery.release(admitted)
          return
        }
        // The same batch, the same ids: an add that went through but lost its answer is not doubled.
        await sleep(Math.min(5000, 100 * 2 ** attempt), this.stop.signal)
      }
    }
  }

  private lost (push: Accepted, err: Error): void {
    this.counters.failed++
    this.counters.waiting--
    const code = (err as { code?: string }).code
    push.log.error({ messageId: push.id, reason: err.message, code }, 'wechat: a handler push could not be queued')
  }

  /**
   * close(): flush everything now; after DRAIN_MS, one last try per batch, then what is left is
   * logged as lost. An async config.wechatPush that has not settled by then is not waited for (a
   * hung database call in it must not hang shutdown): its push, if it ever comes, is logged as lost.
   */
  async drain (): Promise<void> {
    const stopped = new Promise<void>((resolve) => { this.stop.signal.addEventListener('abort', () => resolve(), { once: true }) })
    const all = (async () => {
      while (this.buffer.length > 0 || this.flushing !== null || (this.aside.size > 0 && !this.stop.signal.aborted)) {
        this.flush()
        // Once stopped, only the flush under way is awaited (it ends: the abort cuts its retry
        // waits). Racing it against the settled `stopped` would loop without ever yielding to I/O:
        // the flush never got its answer and the heap filled up (a close during a slow queue add).
        if (this.stop.signal.aborted) await Promise.allSettled([this.flushing])
        else await Promise.race([Promise.allSettled([this.flushing, ...this.aside]), stopped])
      }
    })()
    try {
      if (await within(all, DRAIN_MS)) return
      this.stop.abort()
      // The last try is bounded too: a queue add stuck on a socket that never answers nor fails must
      // not hold shutdown for ever (its pushes are then only in this process's memory: lost).
      if (!(await within(all, DRAIN_MS)) && this.lastLog !== null) {
        this.lastLog.error({ count: this.counters.waiting }, 'wechat: handler pushes still not queued when close() gave up on them; lost')
      }
    } finally {
      this.closed = true
    }
  }
}
