import { performance } from 'node:perf_hooks'

/** What Deadlines keeps per call: when it must be over, whether it is, and how to end it. */
export interface DeadlineEntry {
  readonly deadline: number
  /** the call finished (or timed out): its entry is skipped and dropped */
  done: boolean
  /** the deadline passed before the call finished */
  expire (): void
}

/**
 * Per-call deadlines on one shared timer. Every call of a client has the same timeout, so deadlines
 * come in the order calls start: a FIFO holds the calls in flight, finished ones leave from the head
 * (calls mostly finish in order, so it stays about as long as the calls in flight), and the one timer
 * is armed for the head. It fires about once per `timeout`, and never after a live deadline; a call
 * costs no timer and no abort signal of its own.
 */
export class Deadlines {
  // A finished entry's slot is cleared as the head passes it: the array must not keep whole calls
  // alive (at thousands of calls per second, long enough to be promoted to the old generation).
  private queue: (DeadlineEntry | null)[] = []
  private head = 0
  private timer: NodeJS.Timeout | null = null

  constructor (readonly timeout: number) {}

  /** The deadline of a call starting now (monotonic clock). */
  next (): number {
    return performance.now() + this.timeout
  }

  add (entry: DeadlineEntry): void {
    this.queue.push(entry)
    if (this.timer === null) this.arm(entry.deadline)
  }

  finish (entry: DeadlineEntry): void {
    entry.done = true
    const queue = this.queue
    let head = this.head
    while (head < queue.length && (queue[head] as DeadlineEntry).done) queue[head++] = null
    if (head === queue.length) {
      queue.length = 0
      head = 0
    } else if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head)
      head = 0
    }
    this.head = head
  }

  /** Stops the timer (client closed); calls still in flight are ended by the pool's close. */
  close (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  private arm (deadline: number): void {
    // unref: a call in flight keeps the process alive through its socket; the timer alone must not.
    this.timer = setTimeout(this.fire, Math.max(0, Math.ceil(deadline - performance.now())))
    this.timer.unref()
  }

  private readonly fire = (): void => {
    this.timer = null
    const now = performance.now()
    const queue = this.queue
    const expired: DeadlineEntry[] = []
    while (this.head < queue.length) {
      const entry = queue[this.head] as DeadlineEntry
      if (!entry.done) {
        if (entry.deadline > now) break
        entry.done = true
        expired.push(entry)
      }
      queue[this.head++] = null
    }
    if (this.head === queue.length) {
      queue.length = 0
      this.head = 0
    } else {
      this.arm((queue[this.head] as DeadlineEntry).deadline)
    }
    // After the queue is consistent again: an entry's expire() may finish other calls.
    for (const entry of expired) entry.expire()
  }
}
