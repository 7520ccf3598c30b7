import type { Worker } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { BatchData } from './batch-jobs.js'
import type { JobData } from './job-runner.js'
import { within } from './within.js'

/** How long an add waits for the queue's connection to come up (boot, a reconnect under way). */
export const ADD_CONNECT_MS = 2000

/**
 * The connections BullQueue (bullmq-queue.ts) makes: it tracks a connection we made and every
 * connection BullMQ duplicates from it (BullMQ creates its blocking connection with `duplicate()`),
 * so close() can end them all.
 */
export class OwnedConnections {
  private readonly owned = new Set<Redis>()

  own (connection: Redis): Redis {
    const duplicate = connection.duplicate.bind(connection)
    connection.duplicate = ((...args: Parameters<Redis['duplicate']>) => this.own(duplicate(...args))) as Redis['duplicate']
    connection.on('error', () => {}) // reported through BullMQ's 'error' events
    this.owned.add(connection)
    return connection
  }

  /**
   * Whatever BullMQ has not closed by now (its own blocking connection, if Redis is away) is cut,
   * so nothing of ours keeps the process alive or reconnecting after close.
   */
  async end (): Promise<void> {
    await Promise.all([...this.owned].map(async (connection) => {
      if (connection.status !== 'end' && !await within(connection.quit(), 1000)) connection.disconnect()
      // quit() leaves a Sentinel client's failover-detector subscriptions open (ioredis #1362);
      // disconnect() ends them. Not on a plain client whose quit() ended it: its disconnect() arms a
      // 2 s timer for a stream that already closed, which held the process that long after close().
      else if (!connection.isCluster && (connection.status !== 'end' || isSentinelClient(connection))) connection.disconnect()
    }))
  }
}

function isSentinelClient (connection: Redis): boolean {
  const sentinels = (connection.options as { sentinels?: unknown } | undefined)?.sentinels
  return Array.isArray(sentinels) && sentinels.length > 0
}

/** The connection jobs are added on (no offline queue), and the wait for it to be ready. */
export class AddConnection {
  /** the wait for the add connection that adds arriving meanwhile share (connectedForAdd) */
  private connecting: Promise<boolean> | undefined

  constructor (private readonly connection: Redis) {}

  /**
   * BullMQ waits, without a bound, for a connection that has not come up yet before it sends an add
   * (the connection refused at maxclients, or Redis down since boot): the enqueue hung, even through
   * close(). An add waits for its connection at most ADD_CONNECT_MS, else it is refused before anything
   * was sent (so nothing can be added later behind the caller's back).
   */
  async connectedForAdd (): Promise<void> {
    const connection = this.connection
    if (connection.status === 'ready') return
    if (connection.status === 'wait') connection.connect().catch(() => {}) // (lazyConnect inherited from the app's client)
    // (adds waiting together share one wait: one 'ready' listener, not one per add)
    this.connecting ??= readyWithin(connection, ADD_CONNECT_MS).finally(() => { this.connecting = undefined })
    if (!await this.connecting) throw new Error(`no connection to Redis for the queue within ${ADD_CONNECT_MS} ms (${connection.status}); nothing was added`)
  }

  /** Whether the connection is (back) up within `ms`: a reconnect after it broke under an add. */
  async backWithin (ms: number): Promise<boolean> {
    return ms > 0 && await readyWithin(this.connection, ms)
  }
}

/**
 * The worker's part of close(). BullMQ's graceful close waits for its connections to be back; give
 * a reconnect a moment (Redis just restarted), and cut the connections if Redis stays away.
 */
export async function closeWorker (worker: Worker<JobData | BatchData>, connection: Redis | null, graceMs: number, log: FastifyBaseLogger): Promise<void> {
  const connected = await readyWithin(connection, 5000)
  if (!connected || !await within(worker.close(), graceMs)) {
    // worker.close(true) would return the same pending promise: cut the connections instead.
    if (connected) log.warn('wechat: queue jobs still active at close; another instance will pick them up when their lock expires')
    connection?.disconnect()
    await within(Promise.resolve(worker.disconnect()), 1000)
    if (!await within(worker.close(), 2000)) stopWorkerTimers(worker)
  }
}

/**
 * BullMQ 6 stops its lock-renewal timer and stalled-job checker only at the end of a worker close
 * that completes. A close stuck on a connection that cannot come back (Redis down, or a blocking
 * connection left reconnecting after a restart) would leave both re-arming forever and the process
 * alive: stop them ourselves. Private fields, so each is optional; the lock of any job still active
 * then expires and another instance takes the job, as after a crash.
 */
function stopWorkerTimers (worker: Worker<JobData | BatchData>): void {
  const internals = worker as unknown as { lockManager?: { close?: () => Promise<void> }, stalledCheckStopper?: () => void }
  internals.lockManager?.close?.().catch(() => {})
  internals.stalledCheckStopper?.()
}

async function readyWithin (connection: Redis | null, ms: number): Promise<boolean> {
  if (!connection || connection.status === 'ready') return connection !== null
  if (connection.status === 'end') return false
  let onReady = (): void => {}
  const ready = new Promise<void>((resolve) => { onReady = resolve })
  connection.once('ready', onReady)
  await within(ready, ms)
  // (every add waits here while the connection is down: a listener left per wait would pile up)
  connection.off('ready', onReady)
  return (connection.status as string) === 'ready' // (changed while we waited; TypeScript narrowed it above)
}
