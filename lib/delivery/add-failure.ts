import { AddInterruptedError } from './queue.js'

/** ioredis's error for a command it could not write (adds have no offline queue): it never left. */
const NOT_WRITTEN = "Stream isn't writeable"
/** ioredis's errors for commands written on a connection that closed before their replies came */
const CUT_OFF = new Set(['AbortError', 'InterruptError', 'MaxRetriesPerRequestError'])
const CONNECTION_CLOSED = 'Connection is closed.'

/**
 * What a failed queue add says about its jobs. Redis runs what it was sent even when its replies
 * never come back (a Redis killed between running a pipeline and answering it, its AOF keeping what
 * it ran), so only two failures mean nothing was added: the add never left (no writable
 * connection), or Redis answered the add's only job with an error. A connection that broke after the
 * add was written, or an error reply to one job of several (BullMQ reports the first error; the jobs
 * before it were added), leaves the jobs maybe queued: an AddInterruptedError, which callers must not
 * undo (a retry re-adds the same job ids, a no-op where they exist).
 */
export function addFailure (err: unknown, jobCount: number): unknown {
  if (!(err instanceof Error) || err.message.startsWith(NOT_WRITTEN)) return err
  const cutOff = CUT_OFF.has(err.name) || err.message === CONNECTION_CLOSED
  if (!cutOff && jobCount <= 1) return err
  const what = cutOff ? 'the connection to the queue\'s Redis broke during the add' : 'Redis refused one of the jobs added together'
  return new AddInterruptedError(`${what} (${err.message}): the jobs may be queued all the same`, { cause: err })
}
