import type { FastifyBaseLogger } from 'fastify'
import { sleep } from '../api/backoff.js'

/** How long a queue add cut off from Redis is completed in the background (late-adds.ts). */
export const LATE_ADD_WINDOW_MS = 60_000
/** The pause between two tries of such an add. */
const LATE_ADD_EVERY_MS = 1000

/**
 * Queue adds whose connection broke after they were written (add-failure.ts): Redis may have run
 * them or not, and ioredis will not send them again. Their callers were told "maybe queued", and
 * their records say `pending`; so the same jobs are added again once the connection is back (a no-op
 * for those Redis has: the job ids are the messages'), which makes "maybe" "queued", for up to
 * LATE_ADD_WINDOW_MS. What is still not added then, or at close, is logged with its job ids.
 */
export class LateAdds {
  private closed = false
  /** the job ids being added again: a job is in one loop at most (a caller retrying under its key adds the same jobs again and again) */
  private readonly pending = new Set<string>()

  constructor (private readonly log: FastifyBaseLogger) {}

  /** `add` makes the add again for the jobs given (it rejects if it did not go through). */
  finish<J extends { jobId: string }> (jobs: readonly J[], add: (jobs: J[]) => Promise<void>): void {
    if (this.closed) return
    const mine = jobs.filter((job) => !this.pending.has(job.jobId))
    if (mine.length === 0) return
    const jobIds = mine.map((job) => job.jobId)
    for (const id of jobIds) this.pending.add(id)
    const until = Date.now() + LATE_ADD_WINDOW_MS
    const run = async (): Promise<void> => {
      while (!this.closed && Date.now() < until) {
        try {
          await add(mine)
          this.log.info({ jobIds }, 'wechat: a queue add cut off from Redis went through on its own again')
          return
        } catch {}
        await sleep(LATE_ADD_EVERY_MS)
      }
      if (!this.closed) this.log.warn({ jobIds }, `wechat: a queue add cut off from Redis could not be made again within ${LATE_ADD_WINDOW_MS / 1000} s: its messages may not be queued (status(id) tells)`)
    }
    run().catch(() => {}).finally(() => { for (const id of jobIds) this.pending.delete(id) })
  }

  /** Stops the adds still being tried (app.close()); what they hold may not be queued. */
  close (): void {
    this.closed = true
    if (this.pending.size > 0) {
      const jobIds = [...this.pending]
      this.log.warn({ jobs: jobIds.length, jobIds: jobIds.slice(0, 20) }, 'wechat: closing with queue adds cut off from Redis not made again: their messages may not be queued (status(id) tells)')
    }
    this.pending.clear()
  }
}
