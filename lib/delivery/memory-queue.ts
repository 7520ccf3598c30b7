import Denque from 'denque'
import type { FastifyBaseLogger } from 'fastify'
import type { JobData, JobRunner } from './job-runner.js'
import type { MessageQueue, QueuedJob } from './queue.js'

/** The longest timer Node keeps (2^31 - 1 ms); longer ones fire after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1

interface Entry { data: JobData, attempt: number }

export interface MemoryQueueOptions {
  concurrency: number
  attempts: number
  limiter?: { max: number, duration: number }
}

/**
 * The queue without Redis: same API and retry rules as the BullMQ queue, in this process only.
 * Not durable: what is waiting when the process stops is lost (said at startup and in the README).
 */
export class MemoryQueue implements MessageQueue {
  readonly kind = 'memory' as const
  readonly durable = false
  // FIFOs as deques: Array#shift copies the whole array once it is large (tens of thousands of
  // entries), which made draining a backlog quadratic (28 µs a shift at 60,000 waiting).
  private readonly ready = new Denque<Entry>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private readonly active = new Set<Promise<void>>()
  private readonly starts = new Denque<number>()
  private running = false
  private closing = false
  private pausedUntil = 0
  /** the last resume(): a 45009 answering a call made before it is the old day's, not a new pause */
  private resumedAt = 0
  private wakeTimer: NodeJS.Timeout | null = null

  constructor (private readonly runner: JobRunner, private readonly options: MemoryQueueOptions, private readonly log: FastifyBaseLogger) {}

  /** ids waiting or running: a second add of the same message is a no-op, as in BullMQ (jobId). */
  private readonly known = new Set<string>()

  async add (jobs: QueuedJob[]): Promise<void> {
    // (an add after close() would be dropped without a word: the caller gets an error to count)
    if (this.closing) throw new Error('the in-process queue is closed (app.close())')
    for (const job of jobs) {
      if (this.known.has(job.data.id)) continue
      this.known.add(job.data.id)
      this.schedule({ data: job.data, attempt: 1 }, job.delayMs ?? 0)
    }
  }

  async start (): Promise<void> {
    this.running = true
    this.pump()
  }

  async close (graceMs: number): Promise<void> {
    this.closing = true
    for (const timer of this.timers) clearTimeout(timer)
    if (this.wakeTimer) clearTimeout(this.wakeTimer)
    const dropped = this.ready.length + this.timers.size
    if (dropped > 0) this.log.warn({ dropped }, 'wechat: in-process queue closed with messages still waiting (not durable: see the queue option for the durable queue on Redis)')
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.allSettled([...this.active]),
      new Promise((resolve) => { timer = setTimeout(resolve, graceMs); timer.unref() })
    ])
    clearTimeout(timer)
  }

  private schedule (entry: Entry, delayMs: number, front = false): void {
    if (this.closing) return
    if (delayMs <= 0) {
      if (front) this.ready.unshift(entry)
      else this.ready.push(entry)
      this.pump()
      return
    }
    // setTimeout takes at most 2^31 - 1 ms (about 24.8 days; a longer delay fires at once): a longer
    // wait (enqueue's delay goes to 30 days) is taken in steps.
    const step = Math.min(delayMs, MAX_TIMER_MS)
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      this.schedule(entry, delayMs - step)
    }, step)
    timer.unref()
    this.timers.add(timer)
  }

  private pump (): void {
    if (!this.running || this.closing) return
    while (this.active.size < this.options.concurrency && this.ready.length > 0) {
      const wait = this.waitMs()
      if (wait > 0) { this.wakeIn(wait); return }
      const entry = this.ready.shift() as Entry
      // start times are kept for the limiter only: without one nothing would ever drop them
      if (this.options.limiter) this.starts.push(Date.now())
      const work = this.work(entry).finally(() => {
        this.active.delete(work)
        this.pump()
      })
      this.active.add(work)
    }
  }

  /** How long until the quota pause ends or the limiter lets one more start. */
  private waitMs (): number {
    const now = Date.now()
    if (this.pausedUntil > now) return this.pausedUntil - now
    const limiter = this.options.limiter
    if (!limiter) return 0
    while (this.starts.length > 0 && (this.starts.peekFront() as number) <= now - limiter.duration) this.starts.shift()
    return this.starts.length < limiter.max ? 0 : (this.starts.peekFront() as number) + limiter.duration - now
  }

  async resume (): Promise<number> {
    // (paused or not: a 45009 of a call made before now is the old day's, even one whose pause has
    // not begun yet, a resume made as soon as the message's record showed it)
    this.resumedAt = Date.now()
    // (not paused, or the pause already ran out: nothing waits for the reset)
    if (this.pausedUntil <= Date.now()) return 0
    this.pausedUntil = 0
    if (this.wakeTimer) clearTimeout(this.wakeTimer)
    this.wakeTimer = null
    const waiting = this.ready.length
    this.log.info({ released: waiting }, 'wechat: the queue resumes (resumeQueue): the daily quota was reset')
    this.pump()
    return waiting
  }

  quotaHeld (): boolean {
    return this.pausedUntil > Date.now()
  }

  async pauseForQuota (pauseMs: number, calledAt: number): Promise<boolean> {
    // (the call left before a resume: its 45009 is the old day's)
    if (calledAt < this.resumedAt) return false
    this.pause(pauseMs)
    return true
  }

  private pause (pauseMs: number): void {
    this.pausedUntil = Math.max(this.pausedUntil, Date.now() + pauseMs)
    this.log.warn({ pauseMs }, 'wechat: daily quota used up (45009); sending paused until it resets')
  }

  private wakeIn (ms: number): void {
    if (this.wakeTimer) return
    // (a longer wait is taken in steps: a timer of more than 2^31 - 1 ms fires after 1 ms)
    this.wakeTimer = setTimeout(() => { this.wakeTimer = null; this.pump() }, Math.min(ms, MAX_TIMER_MS))
    this.wakeTimer.unref()
  }

  private async work (entry: Entry): Promise<void> {
    try {
      const verdict = await this.runner.run(entry.data, entry.attempt, this.options.attempts)
      if (verdict.kind === 'done') this.known.delete(entry.data.id)
      else if (verdict.kind === 'retry') this.schedule({ data: { ...entry.data, ambiguous: verdict.ambiguous }, attempt: entry.attempt + 1 }, verdict.delayMs)
      else if (verdict.kind === 'wait' || verdict.kind === 'held') this.schedule(entry, verdict.delayMs)
      else if (verdict.kind === 'quota' && verdict.calledAt < this.resumedAt) {
        // the call left before the quota was reset: tried again now, not parked for another day
        this.schedule(entry, 0)
      } else if (verdict.kind === 'quota') {
        this.pause(verdict.pauseMs)
        this.schedule(entry, 0, true)
      }
    } catch (err) {
      // The runner writes records defensively; anything else is retried rather than lost.
      this.log.error({ messageId: entry.data.id, reason: (err as Error).message }, 'wechat: queue job crashed; retrying it')
      this.schedule(entry, 1000)
    }
  }
}
