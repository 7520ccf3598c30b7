import type { FastifyBaseLogger } from 'fastify'
import { systemClock } from '../options.js'
import type { Clock } from '../options.js'

/** How often a clock of the app's own is read while a 45009 pause waits for it. */
const CHECK_MS = 1000

/**
 * A 45009 pause lasts until the daily quota resets, midnight in China by the plugin's `clock`. The
 * queues wait in real time (their timers, BullMQ's delays, Redis TTLs); with a clock of the app's own
 * (a test sharing the simulator's clock, moved past midnight) the pause never ended until as much real
 * time went by (an audit). This ends it, as resumeQueue() does, once that clock reaches the reset. The
 * system clock needs nothing: the real wait ends then.
 */
export class QuotaClock {
  private end = 0
  private timer: NodeJS.Timeout | null = null
  private stopped = false

  constructor (private readonly clock: Clock, private readonly resume: () => Promise<unknown>, private readonly log: FastifyBaseLogger) {}

  /** A 45009 paused the queue for `pauseMs` (by the clock: job-runner.ts). */
  paused (pauseMs: number): void {
    if (this.clock === systemClock || this.stopped) return
    this.end = Math.max(this.end, this.clock.now() + pauseMs)
    if (this.timer === null) {
      this.timer = setInterval(() => { this.check() }, CHECK_MS)
      this.timer.unref()
    }
  }

  /** close(): no resume after it. */
  stop (): void {
    this.stopped = true
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  private check (): void {
    if (this.clock.now() < this.end) return
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.log.info('wechat: the clock passed the daily quota reset; resuming the queue')
    // (Redis unreachable: the pause stays; the real wait, or a later 45009's pause, ends it)
    this.resume().catch((err: Error) => { this.log.warn({ reason: err.message }, 'wechat: could not resume the queue at the quota reset') })
  }
}
