import type { FastifyBaseLogger } from 'fastify'
import { thrownText } from '../errors.js'

/** Final records of direct sends kept in memory at most while the store is down; beyond, the oldest go. */
export const MAX_HELD_RECORDS = 10_000
/**
 * First wait before writing them again; it doubles up to RETRY_MAX_MS while the store stays down. Kept
 * short: a record written late is missing from status() meanwhile, and a delivery receipt arriving
 * then finds nothing to mark (receipts.ts retries for about 5 s). A try while Redis is down fails at
 * once (the store does not queue commands for an unready client), so trying often costs nothing.
 */
export const RETRY_MIN_MS = 500
export const RETRY_MAX_MS = 2000
/** How long close() spends on one last try. */
const CLOSE_TRY_MS = 2000
/** Held records written together (one script call with the Redis store). */
const WRITE_CHUNK = 100

/** One held write: applying it twice is harmless (a create is SET NX, an update of the same patch changes nothing). */
export interface HeldWrite { id: string, write: () => Promise<unknown> }

/**
 * The final record of a direct send whose write failed (Redis down): WeChat already has the message,
 * so it is kept in this process and written again, in order, once the store answers, instead of
 * being lost from status() and stats(). Bounded (MAX_HELD_RECORDS, oldest dropped first); logged
 * once when records start to be held, once when they are written, and for any lost.
 */
export class RecordRetries {
  private held: HeldWrite[] = []
  private timer: NodeJS.Timeout | null = null
  private waitMs = RETRY_MIN_MS
  private running: Promise<void> | null = null
  private dropped = 0
  private closed = false

  constructor (private readonly log: FastifyBaseLogger) {}

  /** records waiting in this process for the store */
  get size (): number {
    return this.held.length
  }

  hold (entry: HeldWrite, err: unknown): void {
    if (this.closed) {
      this.log.warn({ messageId: entry.id, reason: thrownText(err) }, 'wechat: could not write the message record (the app is closing); it is lost')
      return
    }
    if (this.held.length === 0) {
      this.log.warn({ messageId: entry.id, reason: thrownText(err) }, 'wechat: could not write the message record; keeping it (and any more) in memory to write when the store answers')
    }
    this.held.push(entry)
    if (this.held.length > MAX_HELD_RECORDS) {
      this.held.shift()
      this.dropped++
    }
    this.schedule()
  }

  /** close(): one last bounded try, then what is still held is logged as lost. */
  async close (): Promise<void> {
    this.closed = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    if (this.running !== null) await this.running
    if (this.held.length > 0) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([this.writeHeld(), new Promise((resolve) => { timer = setTimeout(resolve, CLOSE_TRY_MS) })])
      clearTimeout(timer)
    }
    if (this.held.length > 0 || this.dropped > 0) {
      // (a chunk still under way when the last try timed out may yet land: "not confirmed", not "lost")
      this.log.error({ lost: this.held.length + this.dropped, messageIds: this.held.slice(0, 20).map((entry) => entry.id) }, 'wechat: message records not confirmed written before close (the store was down); those messages were sent but may have no record')
      this.held = []
    }
  }

  private schedule (): void {
    if (this.timer !== null || this.running !== null || this.closed) return
    this.timer = setTimeout(() => {
      this.timer = null
      this.running = this.writeHeld().finally(() => {
        this.running = null
        if (this.held.length > 0) this.schedule()
      })
    }, this.waitMs)
    this.timer.unref()
  }

  /** Writes the held records, WRITE_CHUNK at a time (they share a script call); stops while the store still fails. */
  private async writeHeld (): Promise<void> {
    let written = 0
    while (this.held.length > 0) {
      const chunk = this.held.slice(0, WRITE_CHUNK)
      const results = await Promise.allSettled(chunk.map((entry) => entry.write()))
      const done = new Set(chunk.filter((_, i) => results[i]?.status === 'fulfilled'))
      // (filter, not splice: close() may have emptied the list while these writes were under way)
      this.held = this.held.filter((entry) => !done.has(entry))
      written += done.size
      if (done.size < chunk.length) {
        this.waitMs = Math.min(this.waitMs * 2, RETRY_MAX_MS)
        return
      }
    }
    this.waitMs = RETRY_MIN_MS
    if (written > 0) this.log.info({ written }, 'wechat: the store answers again; the held message records are written')
    if (this.dropped > 0) {
      this.log.error({ lost: this.dropped }, `wechat: more than ${MAX_HELD_RECORDS} message records waited for the store; the oldest were dropped (those messages were sent but have no record)`)
      this.dropped = 0
    }
  }
}
