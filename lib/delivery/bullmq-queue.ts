import { DelayedError, Queue, Worker } from 'bullmq'
import type { Job } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { duplicateClient } from '../store/connection.js'
import { BATCH_JOB, bulkOf } from './batch-jobs.js'
import type { BatchData, BulkJob } from './batch-jobs.js'
import type { JobData, JobRunner, Verdict } from './job-runner.js'
import type { MessageQueue, QueuedJob } from './queue.js'
import { AddInterruptedError, AddUnansweredError } from './queue.js'
import { confirmReplicas, warnFewReplicas } from './bullmq-replicas.js'
import { Slots } from './slots.js'
import { addFailure } from './add-failure.js'
import { LateAdds } from './late-adds.js'
import { QueueErrors } from './queue-errors.js'
import { sleep } from '../api/backoff.js'
import { within } from './within.js'
import { AddConnection, closeWorker, OwnedConnections } from './bullmq-connection.js'
import { QuotaPause } from './quota-pause.js'

export const QUEUE_NAME = 'subscribe-send'
/** How long a queue add waits for Redis's answer before it is reported as maybe queued (AddUnansweredError). */
export const ADD_ANSWER_MS = 5000
/** The most a rate-limited worker waits before fetching again (the 45009 pause's rate limit included). */
const MAX_RATE_LIMIT_WAIT_MS = 5000

export interface BullQueueOptions {
  /** `wechat:{appId}`: BullMQ's keys become `wechat:{appId}:subscribe-send:*`, one Cluster slot */
  prefix: string
  concurrency: number
  attempts: number
  limiter?: { max: number, duration: number }
  /** option queue.replicas: an add resolves only once this many replicas have it (WAIT) */
  replicas?: { count: number, timeoutMs: number }
  /** what this instance learns of the fleet's 45009 pause from Redis (RunnerHooks onQuotaAdopted / onQuotaResumed) */
  pauseEvents?: { adopted?: () => void, resumed?: () => void }
}

/** A retry the runner asked for; carries its backoff to BullMQ's backoffStrategy. */
class RetryLater extends Error {
  constructor (readonly delayMs: number) {
    super('transient WeChat error; retrying with backoff')
  }
}

/**
 * The durable queue: BullMQ on the app's Redis. BullMQ gets connections duplicated from the app's
 * client and closed by us, never the app's client itself (BullMQ defines scripts on it, and may
 * disconnect it when a close times out): one for adding jobs, with no offline queue so an enqueue
 * during an outage fails at once instead of hanging, and one for the worker (blocking commands need
 * `maxRetriesPerRequest: null`). Every instance works the queue; the limiter is fleet-wide.
 */
export class BullQueue implements MessageQueue {
  readonly kind = 'bullmq' as const
  readonly durable = true
  /** the queue's own connection and BullMQ Queue, made on first use (producer()) */
  private producing: { queue: Queue<JobData | BatchData>, connection: Redis, ready: AddConnection } | null = null
  private worker: Worker<JobData | BatchData> | null = null
  /** WeChat calls in flight in this instance: single jobs and the messages of batch jobs share them */
  private readonly slots: Slots
  private workerConnection: Redis | null = null
  private readonly connections = new OwnedConnections()
  /** the 45009 pause, fleet-wide (quota-pause.ts) */
  private readonly quota: QuotaPause

  /** close() began: batch messages not yet tried go back to the queue */
  private closing = false
  /** adds cut off from Redis, made again once the connection is back (late-adds.ts) */
  private readonly lateAdds: LateAdds
  /** the queue's error events: logged without flooding; a burst pauses the worker (queue-errors.ts) */
  private readonly errors: QueueErrors

  constructor (
    private readonly client: Redis,
    private readonly runner: JobRunner,
    private readonly options: BullQueueOptions,
    private readonly log: FastifyBaseLogger
  ) {
    this.slots = new Slots(options.concurrency)
    this.errors = new QueueErrors(log, (ms) => this.pauseWorker(ms))
    this.lateAdds = new LateAdds(log)
    // (its key beside the queue's keys: the same Cluster slot)
    this.quota = new QuotaPause(`${options.prefix}:${QUEUE_NAME}:quota-paused`, () => this.producer(), log, options.pauseEvents)
  }

  /**
   * The connection adds use and its BullMQ Queue, made at start() or by the first add, not at
   * registration: an app whose ready() fails (another plugin's error) is left with no socket of ours
   * keeping its process alive. None is made once close() began.
   */
  private producer (): { queue: Queue<JobData | BatchData>, connection: Redis, ready: AddConnection } {
    if (this.producing === null) {
      if (this.closing) throw new Error('the queue is closed (app.close())')
      const connection = this.connections.own(duplicateClient(this.client, { enableOfflineQueue: false }))
      // BullMQ keeps the promise of the Queue's setup, and every add awaits it: its Redis-version INFO,
      // refused on this connection (no offline queue, finite retries) when Redis went away during it,
      // failed every add for the app's life. The worker's connection, which never gives up a
      // command, checks the version instead.
      const queue = new Queue<JobData | BatchData>(QUEUE_NAME, { connection, prefix: this.options.prefix, skipVersionCheck: true })
      queue.on('error', (err) => { this.errors.connection(err) })
      this.producing = { queue, connection, ready: new AddConnection(connection) }
    }
    return this.producing
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

  async start (): Promise<void> {
    this.producer()
    // (not awaited: boot must not wait on Redis; the app's own client queues it until connected)
    if (this.options.replicas !== undefined) warnFewReplicas(this.client, this.options.replicas.count, this.log).catch(() => {})
    this.workerConnection = this.connections.own(duplicateClient(this.client, { maxRetriesPerRequest: null, enableOfflineQueue: true }))
    this.worker = new Worker<JobData | BatchData>(QUEUE_NAME, (job, token) => job.name === BATCH_JOB
      ? this.processBatch(job as Job<BatchData>, token)
      : this.slots.use(() => this.process(job as Job<JobData>, token)), {
      connection: this.workerConnection,
      prefix: this.options.prefix,
      concurrency: this.options.concurrency,
      limiter: this.options.limiter,
      // A killed instance's jobs come back after the lock expires; a stalled job is retried, not failed.
      lockDuration: 15_000,
      // (a worker waits out a rate limit, the 45009 pause's included, in steps of this: resume() takes effect within it)
      maximumRateLimitDelay: MAX_RATE_LIMIT_WAIT_MS,
      stalledInterval: 5_000,
      maxStalledCount: 10,
      settings: { backoffStrategy: (_attempts, _type, err) => err instanceof RetryLater ? err.delayMs : 1000 }
    })
    this.worker.on('error', (err) => { this.errors.worker(err) })
    this.worker.on('failed', (job, err) => {
      if (job && !(err instanceof RetryLater)) this.log.error({ messageId: (job.data as JobData).id, jobId: job.id, reason: err.message }, 'wechat: queue job failed')
    })
  }

  private async process (job: Job<JobData>, token: string | undefined): Promise<void> {
    // Jobs this worker fetched before the fleet-wide pause took hold must not call WeChat either,
    // nor a job that got its slot only after close() began.
    if (this.closing) {
      await job.moveToDelayed(Date.now(), token)
      throw new DelayedError()
    }
    if (await this.quota.holds()) {
      await this.quota.park(job, token)
      throw new DelayedError()
    }
    if (job.data.parked === true) {
      // (on its way again: a later delay of another kind, 45011's minute, is not the quota's)
      const { parked: _parked, ...data } = job.data
      await job.updateData(data)
    }
    const verdict = await this.runner.run(job.data, attemptOf(job.data, job.attemptsMade), this.options.attempts)
    switch (verdict.kind) {
      case 'done':
        return
      case 'retry':
        if (verdict.ambiguous && !job.data.ambiguous) await job.updateData({ ...job.data, ambiguous: true })
        throw new RetryLater(verdict.delayMs)
      case 'wait':
        // 45011, or a refused token: come back later without spending an attempt.
        await job.moveToDelayed(Date.now() + verdict.delayMs, token)
        throw new DelayedError()
      case 'quota':
        if (await this.quota.begin(verdict.pauseMs, verdict.calledAt)) throw Worker.RateLimitError()
        // (the call left before a resumeQueue(): its 45009 is the old day's; tried again, no attempt spent)
        await job.moveToDelayed(Date.now(), token)
        throw new DelayedError()
      case 'held':
        // (a record the store could not read; for runs given slots, batch messages, also a pause or close)
        await job.moveToDelayed(Date.now() + verdict.delayMs, token)
        throw new DelayedError()
    }
  }

  /**
   * A batch job (batch-jobs.ts): each message is run as a single job would be, its WeChat call in the
   * slots it shares with them. A message that must wait continues as a single job of its own (added
   * before the batch completes, so a crash in between runs the batch again: the job runner skips the
   * messages that already have their outcome). After a 45009, or once close() began, the messages not
   * yet tried leave the same way (`hold`).
   */
  private async processBatch (job: Job<BatchData>, token: string | undefined): Promise<void> {
    if (await this.quota.holds()) {
      await this.quota.park(job, token)
      throw new DelayedError()
    }
    const later: QueuedJob[] = []
    const options = { slots: this.slots, hold: this.hold }
    const runs = await Promise.allSettled(job.data.batch.map(async (data) => {
      const attempt = attemptOf(data, job.attemptsMade)
      const verdict = await this.runner.run(data, attempt, this.options.attempts, options)
      const next = await this.afterBatchRun(data, attempt, verdict)
      if (next) later.push(next)
    }))
    if (later.length > 0) {
      await this.add(later)
      const parked = later.filter((next) => (next.data as { parked?: true }).parked === true).map((next) => next.data.id)
      if (parked.length > 0) await this.quota.releaseIfResumed(parked)
    }
    // A run that threw (a credit hook with the store down): the batch is retried, and the job runner
    // skips every message that already has its outcome.
    const failed = runs.find((run): run is PromiseRejectedResult => run.status === 'rejected')
    if (failed) throw failed.reason
  }

  /** What a message of a batch does after its run: nothing more, or continue as a single job. */
  private async afterBatchRun (data: JobData, attempt: number, verdict: Verdict): Promise<QueuedJob | undefined> {
    switch (verdict.kind) {
      case 'done':
        return undefined
      case 'retry':
        return { data: { ...data, ambiguous: data.ambiguous === true || verdict.ambiguous, attemptsBefore: attempt }, delayMs: verdict.delayMs }
      case 'wait':
        return { data: { ...data, attemptsBefore: attempt - 1 }, delayMs: verdict.delayMs }
      case 'quota':
        if (await this.quota.begin(verdict.pauseMs, verdict.calledAt)) return { data: { ...data, attemptsBefore: attempt - 1, parked: true }, delayMs: verdict.pauseMs }
        return { data: { ...data, attemptsBefore: attempt - 1 }, delayMs: 0 }
      case 'held': {
        const left = { ...data, attemptsBefore: attempt - 1 }
        // by close() or an unreadable record: only delayed
        if (this.closing || verdict.cause === 'store') return { data: left, delayMs: verdict.delayMs }
        // by the pause: parked like it, unless the pause ended while it waited for its slot
        // (resumeQueue() here, whose end of the pause came before this job existed to be promoted,
        // which left it delayed until the old pause's end: an audit; or on another instance: the
        // local pause only learns it from the fleet's key)
        if (await this.quota.holds()) return { data: { ...left, parked: true }, delayMs: verdict.delayMs }
        return { data: left, delayMs: 0 }
      }
    }
  }

  /**
   * For the messages of a batch waiting for a slot: after a 45009 they wait for the pause; once
   * close() began they go back to the queue untried (close lets calls under way finish and starts no
   * new one, for batch messages as for single jobs).
   */
  private readonly hold = {
    until: (): number | undefined => this.closing ? Date.now() : this.quota.heldHere() ? this.quota.until : undefined,
    pause: (ms: number, calledAt: number): void => { if (calledAt >= this.quota.resumedAt) this.quota.until = Date.now() + ms }
  }

  /** The worker fetches nothing for `ms` (QueueErrors: Redis refusing its commands in a loop). */
  private async pauseWorker (ms: number): Promise<void> {
    const worker = this.worker
    if (worker === null || this.closing) return
    await worker.pause(true)
    await sleep(ms)
    if (!this.closing) await worker.resume()
  }

  quotaHeld (): boolean | Promise<boolean> {
    // (Redis is asked only while paused here, or for the fleet's pause key at most once a second:
    // another instance's pause stops this one's direct sends too; synchronous otherwise, and never
    // waiting on Redis for long)
    return this.quota.heldForSend()
  }

  pauseForQuota (pauseMs: number, calledAt: number): Promise<boolean> {
    return this.quota.begin(pauseMs, calledAt)
  }

  /** resumeQueue(): end the 45009 pause now, fleet-wide (QuotaPause.resume). */
  resume (): Promise<number> {
    return this.quota.resume()
  }

  async close (graceMs: number): Promise<void> {
    this.closing = true
    this.lateAdds.close()
    if (this.worker) await closeWorker(this.worker, this.workerConnection, graceMs, this.log)
    const queue = this.producing?.queue
    if (queue !== undefined && !await within(queue.close(), 2000)) await within(Promise.resolve(queue.disconnect()), 1000)
    await this.connections.end()
  }
}

/** The attempt a run is: those the message used before it left a batch, then BullMQ's own count. */
function attemptOf (data: JobData, attemptsMade: number): number {
  return (data.attemptsBefore ?? 0) + attemptsMade + 1
}
