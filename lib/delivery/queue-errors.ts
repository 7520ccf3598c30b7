import type { FastifyBaseLogger } from 'fastify'

/** The same queue error is logged at most once per this many ms (with how many were left out). */
export const ERROR_LOG_MS = 30_000
/** This many worker errors within one second mean BullMQ is retrying a refused command in a loop... */
export const ERROR_BURST = 20
/** ...so the worker stops fetching for this long. */
export const WORKER_BACKOFF_MS = 5_000

/**
 * The queue's 'error' events. BullMQ retries a command Redis refuses with an error (not a dropped
 * connection: OOM under maxmemory noeviction, an ACL without EVALSHA) at once and without end: one
 * warning per event was 100,000 log lines a minute, and the loop burnt a core. Each distinct reason
 * is logged once per ERROR_LOG_MS with a count of the repeats; a burst of worker errors pauses the
 * worker for WORKER_BACKOFF_MS (`backOff`), after which it fetches again.
 */
export class QueueErrors {
  private readonly lastLogged = new Map<string, { at: number, skipped: number }>()
  private second = 0
  private inSecond = 0
  private backingOff = false

  constructor (private readonly log: FastifyBaseLogger, private readonly backOff: (ms: number) => Promise<void>) {}

  /** A queue connection's error: logged (throttled). */
  connection (err: Error): void {
    this.report('wechat: queue connection error', err)
  }

  /** A worker's error: logged (throttled); a burst of them backs the worker off. */
  worker (err: Error): void {
    this.report('wechat: queue worker error', err)
    const now = Date.now()
    const second = Math.floor(now / 1000)
    if (second !== this.second) {
      this.second = second
      this.inSecond = 0
    }
    if (++this.inSecond < ERROR_BURST || this.backingOff) return
    this.backingOff = true
    this.log.warn({ reason: err.message, backoffMs: WORKER_BACKOFF_MS }, 'wechat: Redis keeps refusing the queue worker\'s commands; the worker pauses before fetching again')
    this.backOff(WORKER_BACKOFF_MS).catch(() => {}).finally(() => { this.backingOff = false })
  }

  private report (msg: string, err: Error): void {
    const key = `${msg}\u0000${err.message}`
    const now = Date.now()
    const last = this.lastLogged.get(key)
    if (last !== undefined && now - last.at < ERROR_LOG_MS) {
      last.skipped++
      return
    }
    if (this.lastLogged.size > 100) this.lastLogged.clear()
    this.lastLogged.set(key, { at: now, skipped: 0 })
    this.log.warn({ reason: err.message, ...(last?.skipped ? { repeated: last.skipped } : {}) }, msg)
  }
}
