import { DelayedError, Queue, Worker } from 'bullmq'
import type { Job } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { duplicateClient } from '../store/connection.js'
import { BATCH_JOB } from './batch-jobs.js'
import type { BatchData } from './batch-jobs.js'
import type { JobData, JobRunner, Verdict } from './job-runner.js'
import type { MessageQueue, QueuedJob } from './queue.js'
import { warnFewReplicas } from './bullmq-replicas.js'
import { Slots } from './slots.js'
import { QueueErrors } from './queue-errors.js'
import { sleep } from '../api/backoff.js'
import { within } from './within.js'
import { AddConnection, closeWorker, OwnedConnections } from './bullmq-connection.js'
import { QuotaPause } from './quota-pause.js'
import { BullAdds } from './bullmq-adds.js'
import type { BullAddsOptions, Producer } from './bullmq-adds.js'

export const QUEUE_NAME = 'subscribe-send'
export { ADD_ANSWER_MS } from './bullmq-adds.js'
/** The most a rate-limited worker waits before fetching again (the 45009 pause's rate limit included). */
const MAX_RATE_LIMIT_WAIT_MS = 5000

export interface BullQueueOptions extends BullAddsOptions {
  /** `wechat:{appId}`: BullMQ's keys become `wechat:{appId}:subscribe-send:*`, one Cluster slot */
  prefix: string
  concurrency: number
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
  private producing: Producer | null = null
  private worker: Worker<JobData | BatchData> | null = null
  /** WeChat calls in flight in this instance: single jobs and the messages of batch jobs share them */
  private readonly slots: Slots
  private workerConnection: Redis | null = null
  private readonly connections = new OwnedConnections()
  /** the 45009 pause, fleet-wide (quota-pause.ts) */
  private readonly quota: QuotaPause

  /** close() began: batch messages not yet tried go back to the queue */
  private closing = false
  /** how jobs go into BullMQ (bullmq-adds.ts) */
  private readonly adds: BullAdds
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
    this.adds = new BullAdds(() => this.producer(), options, log)
    // (its key beside the queue's keys: the same Cluster slot)
    this.quota = new QuotaPause(`${options.prefix}:${QUEUE_NAME}:quota-paused`, () => this.producer(), log, options.pauseEvents)
  }

  /**
   * The connection adds use and its BullMQ Queue, made at start() or by the first add, not at
   * registration: an app whose ready() fails (another plugin's error) is left with no socket of ours
   * keeping its process alive. None is made once close() began.
   */
  private producer (): Producer {
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
    await this.adds.add(jobs)
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
    this.adds.close()
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
