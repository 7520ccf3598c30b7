/**
 * A store command that timed out may still run once the store answers: a stalled Redis runs what it
 * was sent, and a reconnect resends what was unanswered. So an attempt that gave up on a claim (a push's
 * dedupe claim, a keyed send's record) undoes it anyway: the undo goes out after the claim on the same
 * connection, and while the store does not answer it is tried again, until `windowMs` has passed.
 * Each undo must touch only what its own attempt made (compare-and-delete on its own id), so a late
 * one is harmless.
 */
/** How long an idempotency claim whose write failed is tried to be undone while the store does not answer. */
export const LATE_CLAIM_WINDOW_MS = 60_000

export class LateUndo {
  private readonly timers = new Set<NodeJS.Timeout>()
  private closed = false

  constructor (private readonly everyMs = 250) {}

  run (undo: () => Promise<unknown>, windowMs: number): void {
    const until = Date.now() + windowMs
    const attempt = (): void => {
      undo().catch(() => {
        if (this.closed || Date.now() + this.everyMs >= until) return
        const timer = setTimeout(() => { this.timers.delete(timer); attempt() }, this.everyMs)
        timer.unref()
        this.timers.add(timer)
      })
    }
    attempt()
  }

  /** Stops the retries still waiting (close(): the store is about to go away). */
  close (): void {
    this.closed = true
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
  }
}
