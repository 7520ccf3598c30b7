import type { FastifyBaseLogger } from 'fastify'
import { msUntilQuotaReset } from '../api/quota.js'
import type { Clock } from '../options.js'
import type { MessageQueue } from './queue.js'

/**
 * The 45009 pause as direct sends see it (DESIGN.md "Error classes": quota, stop sending until the
 * quota resets; WECHAT.md §2.3 "do not hammer"). One pause for the whole app: a direct send is not
 * made while the queue's pause holds, and a direct send that meets 45009 pauses the queue as a
 * queued message would. resumeQueue() and the quota reset (by the plugin's clock) end it for both.
 */
export interface SendPause {
  /** Whether sending is paused now: synchronous (no Redis call) unless this instance saw a pause begin. */
  held (): boolean | Promise<boolean>
  /** A direct send's call made at `calledAt` (Date.now() ms) met 45009. */
  met (calledAt: number): void
}

/** With a queue, its pause is the pause (memory-queue.ts, quota-pause.ts: fleet-wide on BullMQ). */
export function queueSendPause (queue: MessageQueue, clock: Clock, onPause: (pauseMs: number) => void, log: FastifyBaseLogger): SendPause {
  return {
    held: () => {
      const held = queue.quotaHeld()
      // (Redis unreachable: the send goes on; WeChat answers 45009 again if the quota is still used up)
      return typeof held === 'boolean' ? held : held.catch(() => false)
    },
    met: (calledAt) => {
      const pauseMs = msUntilQuotaReset(clock.now())
      queue.pauseForQuota(pauseMs, calledAt).then((began) => { if (began) onPause(pauseMs) }, (err: Error) => {
        // (Redis unreachable: this instance's own mark still holds; the fleet learns of the 45009 from its own calls)
        log.warn({ reason: err.message }, 'wechat: could not pause the queue for the 45009 a direct send met')
      })
    }
  }
}

/** `queue: false`: the pause is this process's own, until the quota resets by the plugin's clock. */
export function localSendPause (clock: Clock): SendPause {
  let until = 0
  return {
    held: () => clock.now() < until,
    met: () => {
      const now = clock.now()
      until = Math.max(until, now + msUntilQuotaReset(now))
    }
  }
}
