import type { JobData } from './job-runner.js'
import type { QueuedJob } from './queue.js'

/**
 * Messages added together (a flush of handler pushes, an `enqueue()` of an array) go into BullMQ as
 * batch jobs of up to BATCH_SIZE messages. BullMQ's cost is per job (one add script, a move to active
 * and one to completed, each a Lua call with a dozen keys: about 40 µs of the app's CPU and as much
 * of Redis's per job, measured in bench/hook), so a message added with others shares it instead of
 * paying it alone. The batch is the unit BullMQ keeps
 * durable, locks and hands out; each message in it still has its own record, its own outcome and its
 * own retries: a message that must wait (a transient error's backoff, 45011, 45009) leaves the batch
 * as a single job of its own, with the attempts it already used.
 *
 * Only messages the caller marks `batchable` are: those without an idempotency key, which nothing
 * ever adds again by their own id (such an add must stay a no-op while the message sits in the
 * queue), and without a delay. With a `limiter` nothing is batched: BullMQ's limiter counts jobs.
 */
export const BATCH_JOB = 'batch'
export const SEND_JOB = 'send'

/** Small enough that a large flush is spread over the fleet's workers, large enough to share the cost. */
export const BATCH_SIZE = 32

export interface BatchData {
  batch: JobData[]
  /** delayed until the daily quota resets (45009): resume() sends it again at once */
  parked?: true
}

/** One BullMQ job to add: a single message, or a batch of them. */
export interface BulkJob {
  name: string
  data: JobData | BatchData
  jobId: string
  delayMs?: number
  /** attempts its message already used (a single job that left a batch), for BullMQ's attempts */
  attemptsBefore: number
}

/**
 * The BullMQ jobs for `jobs`: the batchable ones in batches of up to BATCH_SIZE (job id `batch-` +
 * the first message's id), the others single. A batch is never of one.
 */
export function bulkOf (jobs: readonly QueuedJob[], batching: boolean): BulkJob[] {
  const batchable = batching ? jobs.filter(isBatchable) : []
  if (batchable.length < 2) return jobs.map(single)
  const bulk: BulkJob[] = []
  for (let i = 0; i < batchable.length; i += BATCH_SIZE) {
    const part = batchable.slice(i, i + BATCH_SIZE)
    const batch = part.map((job) => job.data)
    // The same messages added again (a flush retried after its answer was lost) make the same jobs,
    // with the same ids, which BullMQ ignores while it holds them.
    bulk.push(part.length === 1 ? single(part[0] as QueuedJob) : { name: BATCH_JOB, data: { batch }, jobId: `${BATCH_JOB}-${(batch[0] as JobData).id}`, attemptsBefore: 0 })
  }
  for (const job of jobs) if (!isBatchable(job)) bulk.push(single(job))
  return bulk
}

function single (job: QueuedJob): BulkJob {
  return { name: SEND_JOB, data: job.data, jobId: job.data.id, delayMs: job.delayMs, attemptsBefore: job.data.attemptsBefore ?? 0 }
}

/** On its first way into the queue (a message leaving a batch stays single), and not delayed. */
function isBatchable (job: QueuedJob): boolean {
  return job.batchable === true && (job.delayMs ?? 0) === 0 && job.data.attemptsBefore === undefined
}
