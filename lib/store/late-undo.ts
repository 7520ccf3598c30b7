/**
 * A store command that timed out may still run once the store answers: a stalled Redis runs what it
 * was sent, and a reconnect resends what was unanswered. So an attempt that gave up on a claim (a push's
 * dedupe claim, a keyed send's record) undoes it anyway: the undo goes out after the claim on the same
 * connection (every store command flushes the batched record writes first). An undo that went out and
 * timed out runs when the claim does: it is not sent again (a stalled Redis would otherwise collect one
 * copy a second). One refused before it was sent (the client not ready) is tried again, until `windowMs`
 * has passed. Each undo must touch only what its own attempt made (compare-and-delete on its own id),
 * so a late one is harmless.
 */
/** How long an idempotency claim whose write failed is tried to be undone while the store does not answer. */
export const LATE_CLAIM_WINDOW_MS = 60_000

export class LateUndo {
  private readonly timers = new Set<NodeJS.Timeout>()
  private closed = false

  constructor (private readonly everyMs = 250) {}

  /** Starts the undo; resolves (never rejects) once its first try has settled: whether it succeeded. */
  run (undo: () => Promise<unknown>, windowMs: number): Promise<boolean> {
    const until = Date.now() + windowMs
    const attempt = (): Promise<boolean> => undo().then(() => true, (err: { sent?: boolean }) => {
      if (err?.sent === true || this.closed || Date.now() + this.everyMs >= until) return false
      const timer = setTimeout(() => { this.timers.delete(timer); attempt().catch(() => {}) }, this.everyMs)
      timer.unref()
      this.timers.add(timer)
      return false
    })
    return attempt()
  }

  /** Stops the retries still waiting (close(): the store is about to go away). */
  close (): void {
    this.closed = true
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
  }
}
