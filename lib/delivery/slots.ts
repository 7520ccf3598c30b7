/**
 * A counting semaphore: at most `size` holders at once, the others wait in arrival order. The BullMQ
 * worker shares one between its single jobs and the messages of its batch jobs, so `concurrency`
 * stays what it says, WeChat calls in flight per instance, whatever the jobs carry.
 */
export class Slots {
  private free: number
  private readonly waiting: Array<() => void> = []

  constructor (size: number) {
    this.free = size
  }

  /** Runs `work` in a slot and frees it afterwards, whatever `work` does. */
  async use<T> (work: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--
    else await new Promise<void>((resolve) => this.waiting.push(resolve))
    try {
      return await work()
    } finally {
      // hand the slot straight to the next waiter, or give it back
      const next = this.waiting.shift()
      if (next) next()
      else this.free++
    }
  }
}
