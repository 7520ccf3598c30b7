import type { Queue } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { bulkOf } from './batch-jobs.js'
import type { BatchData, BulkJob } from './batch-jobs.js'
import type { JobData } from './job-runner.js'
import type { QueuedJob } from './queue.js'
import { AddInterruptedError, AddUnansweredError } from './queue.js'
import { addFailure } from './add-failure.js'
import type { AddConnection } from './bullmq-connection.js'
import { confirmReplicas } from './bullmq-replicas.js'
import { LateAdds } from './late-adds.js'
import { within } from './within.js'

/** How long a queue add waits for Redis's answer before it is reported as maybe queued (AddUnansweredError). */
export const ADD_ANSWER_MS = 5000

/** The connection adds use and its BullMQ Queue (BullQueue makes them on first use). */
export interface Producer {
  queue: Queue<JobData | BatchData>
  connection: Redis
  ready: AddConnection
}

export interface BullAddsOptions {
  attempts: number
  limiter?: { max: number, duration: number }
  /** option queue.replicas: an add resolves only once this many replicas have it (WAIT) */
  replicas?: { count: number, timeoutMs: number }
}

/**
 * How jobs go into BullMQ (for BullQueue, bullmq-queue.ts): one addBulk per call, bounded in time,
 * its failure read by add-failure.ts. An add cut off from Redis after it was written is made again
 * under the same job ids once the connection is back: within ADD_ANSWER_MS the call resolves, later
 * the caller hears "maybe queued" and late-adds.ts goes on in the background.
 */
export class BullAdds {
  /** adds cut off from Redis, made again once the connection is back (late-adds.ts) */
  private readonly lateAdds: LateAdds

  constructor (private readonly producer: () => Producer, private readonly options: BullAddsOptions, log: FastifyBaseLogger) {
    this.lateAdds = new LateAdds(log)
  }

  async add (jobs: QueuedJob[]): Promise<void> {
    const started = Date.now()
    const { queue, connection, ready } = this.producer()
    await ready.connectedForAdd()
    const bulk = bulkOf(jobs, this.options.limiter === undefined)
    try {
      await this.addBulk(queue, bulk, ADD_ANSWER_MS)
    } catch (err) {
      if (!(err instanceof AddInterruptedError)) throw err
      // The connection broke after the add was written: Redis may have run all of it, some or none,
      // and ioredis will not send it again. Adding the same jobs again (their ids make it a no-op for
      // those Redis has) settles it, when the connection is back within the add's time.
      // Not back in time: the caller hears "maybe queued", and the add is made again in the background.
      if (!await ready.backWithin(ADD_ANSWER_MS - (Date.now() - started))) throw this.finishLater(bulk, err)
      await this.addBulk(queue, bulk, Math.max(1, ADD_ANSWER_MS - (Date.now() - started))).catch(() => { throw this.finishLater(bulk, err) })
    }
    // (queue.replicas: resolved only once that many replicas have these jobs)
    if (this.options.replicas !== undefined) await confirmReplicas(connection, this.options.replicas)
  }

  /** The same jobs added again in the background (late-adds.ts); answers `err` to throw. */
  private finishLater (bulk: BulkJob[], err?: unknown): unknown {
    this.lateAdds.finish(bulk, async (jobs) => {
      const { queue, ready } = this.producer()
      if (!await ready.backWithin(ADD_ANSWER_MS)) throw new Error('the queue\'s connection is not back')
      await this.addBulk(queue, jobs, ADD_ANSWER_MS)
    })
    return err
  }

  /** One addBulk, bounded by `answerMs`; its failure as add-failure.ts reads it. */
  private async addBulk (queue: Queue<JobData | BatchData>, bulk: BulkJob[], answerMs: number): Promise<void> {
    const added = queue.addBulk(bulk.map(({ name, data, jobId, delayMs, attemptsBefore }) => ({
      name,
      data,
      opts: {
        // Our message id (a batch: its first message's): a second add of the same job is a no-op in BullMQ.
        jobId,
        delay: delayMs,
        // A single job's attempts are the message's; a message leaving a batch takes the ones it has left.
        attempts: Math.max(1, this.options.attempts - attemptsBefore),
        backoff: { type: 'wechat' },
        removeOnComplete: { count: 1000 },
        removeOnFail: { count: 5000 }
      }
    })))
    // A connected Redis that does not answer (stalled) held the enqueue for as long as it lasted.
    if (!await within(added, answerMs)) {
      // (ioredis may still send it; if it gives up on it after its connection broke, it is made again)
      added.catch((err: unknown) => { if (addFailure(err, bulk.length) instanceof AddInterruptedError) this.finishLater(bulk) })
      throw new AddUnansweredError(`the queue's Redis did not answer the add within ${ADD_ANSWER_MS} ms: the jobs may be queued all the same`)
    }
    // (a failure after the add was written may hide jobs Redis ran: add-failure.ts)
    await added.catch((err: unknown) => { throw addFailure(err, bulk.length) })
  }

  /** Stops the background adds (app.close()). */
  close (): void {
    this.lateAdds.close()
  }
}
