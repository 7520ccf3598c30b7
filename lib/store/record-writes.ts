import type { ScriptClient } from './scripts.js'
import { WRITE_REPLY } from './records-scripts.js'

/** RedisStore.run: one command or script with a deadline, failing fast when the client is not ready. */
export type Run = <T>(command: (client: ScriptClient) => Promise<T>) => Promise<T>

/** One write's answer: its code, and the payload some codes carry (records-scripts.ts WRITE_REPLY). */
export type WriteReply = [number, string?, string?]

// Shared answers for the codes without a payload (callers only read them).
const CREATED: WriteReply = [WRITE_REPLY.created]
const MISSING: WriteReply = [WRITE_REPLY.missing]

/** Writes per script call at most: bounds how long one call keeps Redis busy. */
export const MAX_WRITES_PER_CALL = 128

/**
 * How long a deferred write (one nobody waits for: a direct send's final record) may wait for
 * others to share its call. A call costs far more than a write in it (two system calls and a
 * script run each side), so under load a few milliseconds turn ~7 writes per call into ~50.
 */
export const DEFERRED_WRITE_MS = 5

/**
 * Gathers the record writes (creates, updates) issued in the same turn of the event loop into one
 * call of the write script, which applies them in order, each atomically as before: one round trip
 * and one script call for many sends instead of one each. Callers still get their own answer or
 * error. The call goes out after the current I/O callbacks (setImmediate), or at once when a batch
 * is full or another command is about to be sent (`flush()`), so a read issued after a write is
 * still queued behind it on the connection and sees it. A deferred write waits up to
 * DEFERRED_WRITE_MS instead of the end of the turn, unless a write someone awaits comes first.
 */
export class RecordWrites {
  private keys: string[] = []
  private args: string[] = []
  private resolves: ((reply: WriteReply) => void)[] = []
  private rejects: ((err: Error) => void)[] = []
  private scheduled = false
  private timer: NodeJS.Timeout | undefined
  private readonly inflight = new Set<Promise<void>>()

  constructor (private readonly run: Run, private readonly shared: readonly string[]) {}

  /** Queue one write: its own keys (after the shared ones) and its WRITE_ARGS[op] arguments, as the script reads them. */
  write (keys: readonly string[], args: readonly string[], deferred = false): Promise<WriteReply> {
    return new Promise<WriteReply>((resolve, reject) => {
      for (const key of keys) this.keys.push(key)
      for (const arg of args) this.args.push(arg)
      this.resolves.push(resolve)
      this.rejects.push(reject)
      if (this.resolves.length >= MAX_WRITES_PER_CALL) {
        this.flush()
      } else if (!deferred) {
        if (!this.scheduled) {
          this.scheduled = true
          setImmediate(this.scheduledFlush)
        }
      } else if (this.timer === undefined && !this.scheduled) {
        this.timer = setTimeout(this.scheduledFlush, DEFERRED_WRITE_MS)
      }
    })
  }

  /** Send the queued writes now (before any other command, so it is ordered after them). */
  flush (): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    const resolves = this.resolves
    if (resolves.length === 0) return
    const rejects = this.rejects
    const keys = this.keys
    const args = this.args
    this.keys = []
    this.args = []
    this.resolves = []
    this.rejects = []
    const call = this.run((c) => c.wechatPushWriteRecords(this.shared.length + keys.length, this.shared, keys, args) as Promise<(WriteReply | number)[]>)
      .then((replies) => {
        for (let i = 0; i < resolves.length; i++) {
          const reply = replies[i]
          if (reply === WRITE_REPLY.created) (resolves[i] as (reply: WriteReply) => void)(CREATED)
          else if (reply === WRITE_REPLY.missing) (resolves[i] as (reply: WriteReply) => void)(MISSING)
          else if (!Array.isArray(reply)) (rejects[i] as (err: Error) => void)(new Error(`the record write got no answer (${String(reply)})`))
          else if (reply[0] === WRITE_REPLY.error) (rejects[i] as (err: Error) => void)(new Error(String(reply[1])))
          else (resolves[i] as (reply: WriteReply) => void)(reply)
        }
      }, (err: Error) => {
        for (const reject of rejects) reject(err)
      })
    this.inflight.add(call)
    call.then(() => this.inflight.delete(call), () => this.inflight.delete(call))
  }

  /** Send what is queued and wait until every write sent so far has its answer (close()). */
  async drain (): Promise<void> {
    this.flush()
    await Promise.allSettled([...this.inflight])
  }

  private readonly scheduledFlush = (): void => {
    this.scheduled = false
    this.flush()
  }
}
