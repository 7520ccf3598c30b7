import type { FastifyBaseLogger } from 'fastify'
import { sleep } from '../api/backoff.js'
import type { RecordPatch } from '../store/records.js'

/** How long an outcome a job could not write is kept in process memory, and tried again. */
export const UNWRITTEN_KEEP_MS = 10 * 60_000
/** At most this many are kept (a long outage under load); past it the oldest is dropped. */
const MAX_UNWRITTEN = 10_000
const WRITE_EVERY_MS = 1000

/**
 * Outcomes a job could not write within its deadline (a Redis outage longer than
 * OUTCOME_WRITE_DEADLINE_MS, job-runner.ts). The message is with WeChat (or failed for good), but its
 * record still says 'sending', and its job, whose completion Redis never heard of either, runs again
 * once Redis is back: from its record alone it would be sent a second time. Kept here, a run of the
 * same message in this process writes the outcome instead of calling WeChat again; the outcome is
 * also written in the background as soon as the store answers. (A run on another instance cannot
 * know: at-least-once, as the README says.)
 */
export class UnwrittenOutcomes {
  private readonly outcomes = new Map<string, RecordPatch>()

  constructor (private readonly log: FastifyBaseLogger) {}

  /** Keeps `patch` for message `id`, and tries `write` (true once it went through) every second meanwhile. */
  keep (id: string, patch: RecordPatch, write: () => Promise<boolean>): void {
    if (this.outcomes.size >= MAX_UNWRITTEN) {
      const oldest = this.outcomes.keys().next().value as string
      this.outcomes.delete(oldest)
      this.log.warn({ messageId: oldest }, `wechat: more than ${MAX_UNWRITTEN} message outcomes wait for the store: the oldest is no longer kept (a run of it after the outage sends it again)`)
    }
    this.outcomes.set(id, patch)
    const until = Date.now() + UNWRITTEN_KEEP_MS
    const retry = async (): Promise<void> => {
      while (this.outcomes.get(id) === patch && Date.now() < until) {
        await sleep(WRITE_EVERY_MS)
        if (this.outcomes.get(id) === patch && await write().catch(() => false)) this.outcomes.delete(id)
      }
      if (this.outcomes.get(id) === patch) this.outcomes.delete(id)
    }
    retry().catch(() => {})
  }

  /** The outcome this process holds for a message whose record could not take it yet. */
  get (id: string): RecordPatch | undefined {
    return this.outcomes.get(id)
  }

  /** Written (by a run of the message): no longer held. */
  delete (id: string): void {
    this.outcomes.delete(id)
  }
}
