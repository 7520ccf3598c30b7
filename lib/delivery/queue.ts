import type { JobData } from './job-runner.js'

/** A message waiting to be delivered, and when it may start. */
export interface QueuedJob {
  data: JobData
  delayMs?: number
  /**
   * Nothing will ever add this message again by its id (no idempotency key to repeat it): the
   * BullMQ queue may carry it in one job with others added with it (batch-jobs.ts).
   */
  batchable?: boolean
}

/**
 * The durable (BullMQ) and in-process queues share this face, so enqueue, handler pushes and
 * routes do not care which one runs.
 */
export interface MessageQueue {
  readonly kind: 'bullmq' | 'memory'
  readonly durable: boolean
  add (jobs: QueuedJob[]): Promise<void>
  /** start working jobs (called on ready) */
  start (): Promise<void>
  /** stop taking jobs; active ones get `graceMs` to finish */
  close (graceMs: number): Promise<void>
  /**
   * End a 45009 pause now (the quota was reset with clear_quota): the messages parked for it are
   * sent again. Answers how many were waiting for the reset.
   */
  resume (): Promise<number>
  /**
   * Whether the 45009 pause holds now (direct sends wait for it too: send-pause.ts). Synchronous
   * when nothing paused this instance (every direct send asks: no promise for it then).
   */
  quotaHeld (): boolean | Promise<boolean>
  /**
   * A 45009 met outside the queue (a direct send's call made at `calledAt`): pause as if a queued
   * message had met it, unless the call left before a resume. Answers whether the pause began.
   */
  pauseForQuota (pauseMs: number, calledAt: number): Promise<boolean>
}

/** How long close() lets active jobs finish before giving up on them. */
export const CLOSE_GRACE_MS = 10_000

/**
 * An add that may have gone through: its jobs may be queued (and run). The caller must not undo it
 * (its records stay, so a retry with the same idempotency key re-adds the same job ids: a no-op where
 * they exist). The message says what happened; each caller adds the advice that fits it.
 */
export class MaybeAddedError extends Error {}

/** The jobs were written to the master but not confirmed by enough replicas in time: queued, or lost in a failover. */
export class ReplicasUnconfirmedError extends MaybeAddedError {}

/**
 * Redis did not answer the add in time (stalled, or a network path that drops packets): the add
 * may still go through when it answers (the command is on its way, and is sent again on reconnect).
 */
export class AddUnansweredError extends MaybeAddedError {}

/** The add was written, but the connection broke before Redis answered it all (add-failure.ts). */
export class AddInterruptedError extends MaybeAddedError {}
