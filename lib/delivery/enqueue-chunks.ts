import type { Status } from '../store/records.js'
import type { EnqueueResult } from './enqueue.js'
import type { ValueChange } from './message.js'

/** How an enqueue's messages are taken in pieces, and what a call queued in part or in full answers. */

/**
 * An array is claimed, queued and recorded this many messages at a time, one chunk after the other:
 * one queue add (a BullMQ addBulk pipeline) and one round of record writes stay bounded however long
 * the array. An array of up to this many is one add, as before there were chunks.
 */
export const ENQUEUE_CHUNK = 500

/** `work` on `items` ENQUEUE_CHUNK at a time, one chunk after the other; the results in order. */
export async function inChunks<T, R> (items: readonly T[], work: (chunk: T[], start: number) => Promise<readonly R[] | void>): Promise<R[]> {
  const results: R[] = []
  for (let start = 0; start < items.length; start += ENQUEUE_CHUNK) {
    const done = await work(items.slice(start, start + ENQUEUE_CHUNK), start)
    if (done) for (const result of done) results.push(result)
  }
  return results
}

/** The error of an array queued in part: the first `kept` of `total` are (or, unconfirmed, may be) queued. */
export function partly (kept: number, total: number, unconfirmed: boolean, reason: string, what: string): string {
  const first = unconfirmed
    ? `the first ${kept} of ${total} ${what} were added, the last of them unconfirmed (${reason}): they may be sent (messageIds; see status() of each)`
    : `the queue took the first ${kept} of ${total} ${what} (messageIds: they will be sent), then failed (${reason})`
  return `${first}; the other ${total - kept} were not queued`
}

/** One message's answer: `changes` only when truncate repaired something; `duplicate` for a repeat of an idempotency key. */
export function resultOf (id: string, status: Status, changes: ValueChange[] | undefined, duplicate = false): EnqueueResult {
  const result: EnqueueResult = changes !== undefined && changes.length > 0 ? { id, status, changes } : { id, status }
  if (duplicate) result.duplicate = true
  return result
}
