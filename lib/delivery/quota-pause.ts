import type { Job, Queue } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { within } from './within.js'

/**
 * begin()'s script. KEYS: the fleet's resume mark, the pause key, BullMQ's limiter key (all under the
 * `{appId}` hash tag: one Cluster slot). ARGV: when the call that met 45009 left (ms), the pause's
 * end (ms), its length (ms). A call made before the latest resume met the old day's 45009: nothing is
 * paused (0). Otherwise the pause key and BullMQ's rate limit (as Queue#rateLimit writes it; it stops
 * fetching in workers that have a `limiter`, the others read the pause key: holds()) are set (1).
 */
const BEGIN_PAUSE = `
local resumed = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) < resumed then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[3], '9007199254740991', 'PX', ARGV[3])
return 1`

/** How long the fleet remembers a resume: far longer than any call's answer can be late. */
const RESUMED_MARK_MS = 3_600_000
/** How long a direct send waits for Redis to answer the pause key's read (heldForSend()). */
const SEND_READ_WAIT_MS = 100
/** How often a worker not paused itself reads the fleet's pause key (holds()). */
const FLEET_READ_MS = 1000
/** Delayed jobs read per call while resume() looks for the parked ones. */
const DELAYED_PAGE = 500

/** What the pause uses of the queue's producer side (bullmq-queue.ts producer()). */
export interface PauseProducer {
  queue: Queue
  connection: Redis
  ready: { connectedForAdd (): Promise<void> }
}

/**
 * The BullMQ queue's 45009 pause, fleet-wide (DESIGN.md "lib/delivery/": quota parks sending until the
 * daily quota resets). Three marks: this instance's end (`until`, no WeChat call before it), a pause
 * key beside the queue's keys (every instance's worker reads it at most once a second, holds(); any
 * instance's resume() deletes it) and BullMQ's rate limit (which stops fetching only in workers that
 * have a `limiter`). Jobs fetched while paused are parked: marked and delayed until the reset, so
 * resume() can find and promote them.
 */
export class QuotaPause {
  /** 45009 seen by this instance: no call to WeChat before this time (ms) */
  until = 0
  /** this instance's last resume (ms): a 45009 answering a call made before it does not pause again */
  resumedAt = 0
  /** begin() calls under way: until their fleet key is set, holds() must not read its absence as a resume, and resume() waits for them */
  private readonly beginning = new Set<Promise<boolean>>()
  /** the read of the fleet's pause key under way (holds()), shared by the jobs fetched meanwhile */
  private check: Promise<void> | null = null
  /** while not paused here: the last read of the fleet's pause key (ms), and the read under way */
  private fleetReadAt = -Infinity
  private fleetRead: Promise<void> | null = null
  /** resume() under way: concurrent calls on this instance share it */
  private resuming: Promise<number> | null = null

  constructor (
    private readonly key: string,
    private readonly producer: () => PauseProducer,
    private readonly log: FastifyBaseLogger,
    /** `adopted`: a pause another instance began was taken up here; `resumed`: the fleet's pause was found ended */
    private readonly events: { adopted?: () => void, resumed?: () => void } = {}
  ) {}

  /** Whether holds() would ask Redis now: paused here, or the fleet's key is due for its next read. */
  readDue (): boolean {
    return this.heldHere() || this.fleetRead !== null || Date.now() - this.fleetReadAt >= FLEET_READ_MS
  }

  /** Whether this instance's own mark still holds (no Redis call: for decisions that cannot wait). */
  heldHere (): boolean {
    return this.until > Date.now()
  }

  /**
   * 45009 met by a call made at `calledAt`: pause the whole fleet until the quota resets. Not when the
   * call left before a resume (here, or on another instance: the fleet's resume mark): that 45009 is
   * the old day's, and pausing again would hold the queue until the next reset. False then.
   */
  async begin (pauseMs: number, calledAt: number): Promise<boolean> {
    if (calledAt < this.resumedAt) return false
    const work = this.beginNow(pauseMs, calledAt)
    this.beginning.add(work)
    try {
      return await work
    } finally {
      this.beginning.delete(work)
    }
  }

  private async beginNow (pauseMs: number, calledAt: number): Promise<boolean> {
    // This instance stops at once; holds() does not end the pause meanwhile (its fleet key comes below).
    const prior = this.until
    this.until = Date.now() + pauseMs
    const { queue, connection } = this.producer()
    // One script: the fleet's resume mark read and the pause written together. Read first and
    // written after, a resume on another instance in between found no pause to end, and the pause
    // written after it held the fleet until the reset despite the resume.
    const began = await connection.eval(BEGIN_PAUSE, 3, this.resumedKey, this.key, queue.keys.limiter, String(calledAt), String(this.until), String(pauseMs))
    if (began !== 1) {
      // (the fleet resumed after this call left: what this instance holds for that day ends too)
      this.until = prior
      this.events.resumed?.()
      return false
    }
    this.log.warn({ pauseMs }, 'wechat: daily quota used up (45009); the queue is paused until it resets')
    return true
  }

  private get resumedKey (): string {
    return `${this.key}:resumed-at`
  }

  /**
   * holds() for a direct send, which must not wait on Redis: at most SEND_READ_WAIT_MS for a read it
   * starts, not at all for one under way; what this instance knows decides meanwhile (a Redis Cluster
   * slot without its master kept every direct send waiting 1-4 s), and the read goes on for the next send.
   */
  heldForSend (): boolean | Promise<boolean> {
    if (!this.readDue()) return false
    if (this.fleetRead !== null || this.check !== null) return this.heldHere()
    const read = this.holds()
    return within(read, SEND_READ_WAIT_MS).then((answered) => answered ? read : this.heldHere())
  }

  /**
   * Whether the pause holds, for a job this worker fetched. Paused here: another instance's resume()
   * deletes the fleet's pause key, so the key is checked first; jobs fetched together share one check.
   * Not paused here: another instance may have begun the fleet's pause, which BullMQ's rate limit
   * does not carry (it only stops workers that have a `limiter`), so the key is read, at most once
   * every FLEET_READ_MS, and a pause found there is adopted until the key's expiry.
   */
  async holds (): Promise<boolean> {
    if (!this.heldHere()) {
      if (this.fleetRead === null && Date.now() - this.fleetReadAt < FLEET_READ_MS) return false
      this.fleetReadAt = Date.now()
      this.fleetRead ??= this.producer().connection.pttl(this.key)
        // (Redis unreachable: not paused here; a 45009 of this instance's own pauses it)
        .then((leftMs) => {
          if (leftMs <= 0 || this.heldHere()) return
          this.until = Date.now() + leftMs
          this.events.adopted?.()
        }, () => {})
        .finally(() => { this.fleetRead = null })
      await this.fleetRead
      return this.heldHere()
    }
    this.check ??= this.producer().connection.exists(this.key)
      // (Redis unreachable: the pause holds)
      .then((held) => {
        if (held !== 0 || this.beginning.size !== 0) return
        this.until = 0
        this.events.resumed?.()
      }, () => {})
      .finally(() => { this.check = null })
    await this.check
    return this.heldHere()
  }

  /** Delay a fetched job until the reset, marked so resume() finds it (the caller throws DelayedError). */
  async park (job: Job<{ parked?: true }>, token: string | undefined): Promise<void> {
    if (job.data.parked !== true) await job.updateData({ ...job.data, parked: true })
    await job.moveToDelayed(this.until, token)
  }

  /**
   * Jobs a batch parked for the pause (`ids`), added once the batch ended: a resume that ran before they
   * existed did not promote them, and they waited out the old pause (an audit: one message held until
   * real midnight after the clock's reset had resumed the queue). If the pause has ended, they go now.
   */
  async releaseIfResumed (ids: readonly string[]): Promise<void> {
    if (this.resuming !== null) await this.resuming.catch(() => {})
    if (await this.holds()) return
    const { queue } = this.producer()
    await Promise.allSettled(ids.map(async (id) => {
      const job = await queue.getJob(id)
      if (job !== undefined && await job.isDelayed()) await job.promote()
    }))
  }

  /**
   * resumeQueue(): the fleet's pause ends (its key and BullMQ's rate limit go; each worker fetches
   * again within its maximumRateLimitDelay), then the jobs parked for the quota are promoted from
   * delayed. A call that fails part way can be made again: it promotes what is still parked.
   * Answers the jobs that were waiting for the reset: those promoted and those in the wait list (a
   * batch job counts once). Without a pause, here or in the fleet, only jobs still parked are released
   * (the rate limit is also a `queue.limiter`'s window, not to be reset for nothing). Calls on one
   * instance share one run. A 45009 answering a call made before the resume does not pause the queue again.
   */
  resume (): Promise<number> {
    this.resuming ??= this.resumeNow().finally(() => { this.resuming = null })
    return this.resuming
  }

  private async resumeNow (): Promise<number> {
    const { queue, connection, ready } = this.producer()
    await ready.connectedForAdd()
    // The mark first, paused or not: a 45009 of a call made before now, handled on any instance, is the
    // old day's. (Also without a pause yet: a resume made as soon as a message's record shows its
    // 45009 can come before the worker that met it begins the pause, which then held until midnight.)
    this.resumedAt = Date.now()
    await connection.set(this.resumedKey, String(this.resumedAt), 'PX', RESUMED_MARK_MS)
    // A begin() under way here that read the mark before it was set would write its pause key and
    // rate limit after this resume deleted them, pausing the queue until midnight (a CI flake once the
    // resume ended the pause before promoting): it finishes first, and its pause is ended below.
    await Promise.allSettled([...this.beginning])
    const pausedHere = this.heldHere()
    const pausedFleet = await connection.exists(this.key) === 1
    // (all pages read first: promoting while paging would shift the offsets)
    const parked: Job[] = []
    for (let start = 0; ; start += DELAYED_PAGE) {
      const jobs = await queue.getDelayed(start, start + DELAYED_PAGE - 1)
      for (const job of jobs) if ((job?.data as { parked?: true } | undefined)?.parked === true) parked.push(job)
      if (jobs.length < DELAYED_PAGE) break
    }
    const waiting = await queue.getWaitingCount()
    // Without a pause, only jobs still parked go (one parked by a batch that ran on as the pause
    // ended): the wait list is not the reset's, and the rate limit may be a queue.limiter's window.
    const paused = pausedHere || pausedFleet
    // The pause ends before the parked jobs are promoted: a worker that fetched one at once still saw
    // the pause and parked it again until the old pause's end (an audit). A call that fails after
    // this can be made again: without a pause it still promotes the jobs left parked.
    if (paused) {
      await connection.del(this.key)
      await queue.removeRateLimitKey()
      this.until = 0
    }
    // (a job another instance's resume() promoted first is no longer delayed: skipped)
    const promoted = await Promise.allSettled(parked.map(async (job) => { await job.promote() }))
    const promotedCount = promoted.filter((result) => result.status === 'fulfilled').length
    if (!paused) return promotedCount
    const released = waiting + promotedCount
    this.log.info({ released }, 'wechat: the queue resumes (resumeQueue): the daily quota was reset')
    return released
  }
}
