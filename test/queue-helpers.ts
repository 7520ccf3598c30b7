/**
 * Shared by the queue tests (test/queue*.test.ts, test/handler-push*.test.ts): waiting for
 * conditions, unique messages, duplicate counting at the simulator and a look into BullMQ's keys.
 */
import { Queue } from 'bullmq'
import type { JobType } from 'bullmq'
import type { FastifyInstance } from 'fastify'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import type { SimAcceptedMessage } from '../lib/testing/index.js'
import type { SubscribeMessage } from '../lib/public-types.js'

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** 'done' when `promise` settles within `ms`, else 'timeout' (the timer does not keep the process alive). */
export async function within (promise: Promise<unknown>, ms: number): Promise<'done' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  const outcome = await Promise.race([
    promise.then(() => 'done' as const, () => 'done' as const),
    new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), ms) })
  ])
  clearTimeout(timer)
  return outcome
}

/** Polls `check` until it is true; throws with `what` after `timeoutMs`. */
export async function until (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    await sleep(everyMs)
  }
}

/**
 * A valid "order shipped" message whose (toUser, character_string1) pair is unique per (tag, i),
 * also across processes, so duplicates can be counted at the simulator.
 */
export function numbered (tag: string, i: number): SubscribeMessage {
  return {
    toUser: `o${tag}-user-${String(i).padStart(5, '0')}`,
    templateId: DEMO_TEMPLATE_IDS.orderShipped,
    page: `pages/order?id=${i}`,
    data: {
      character_string1: `${tag}${String(i).padStart(6, '0')}`,
      thing2: 'Blue ceramic mug x2',
      amount3: '¥58.00',
      time4: '2026-03-01 14:05',
      phrase5: '已发货'
    }
  }
}

/** The identity of an accepted message: the same business message sent twice has the same one. */
export function identity (m: SimAcceptedMessage): string {
  return `${m.touser}|${m.data.character_string1?.value ?? JSON.stringify(m.data)}`
}

/** The same identity, computed from the message we enqueued. */
export function messageIdentity (m: SubscribeMessage): string {
  const value = (m.data as Record<string, unknown>).character_string1
  return `${m.toUser}|${String(value)}`
}

/** How many accepted messages repeat an earlier one (by touser + data, and by msgid). */
export function duplicates (accepted: SimAcceptedMessage[]): { byIdentity: number, byMsgid: number } {
  return {
    byIdentity: accepted.length - new Set(accepted.map(identity)).size,
    byMsgid: accepted.length - new Set(accepted.map((m) => m.msgid)).size
  }
}

/** Resolves when every id's record is in a final state (sent, failed, unknown, delivered). */
export async function settled (app: FastifyInstance, ids: string[], timeoutMs = 30_000): Promise<void> {
  let left = ids
  await until(`${ids.length} records settled`, async () => {
    const records = await Promise.all(left.map((id) => app.wechat.status(id)))
    left = left.filter((_, i) => !['sent', 'failed', 'unknown', 'delivered'].includes(records[i]?.status ?? 'pending'))
    return left.length === 0
  }, timeoutMs, 100)
}

/** The statuses of the records, counted. */
export async function statusCounts (app: FastifyInstance, ids: string[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  for (const record of await Promise.all(ids.map((id) => app.wechat.status(id)))) {
    const status = record?.status ?? 'missing'
    counts[status] = (counts[status] ?? 0) + 1
  }
  return counts
}

/** A BullMQ Queue handle on the plugin's queue (keys `{keyPrefix}{appId}:subscribe-send:*`), for inspection. */
export function inspectQueue (redisUrl: string, keyPrefix: string, appId: string): Queue {
  const url = new URL(redisUrl)
  const queue = new Queue('subscribe-send', { connection: { host: url.hostname, port: Number(url.port) }, prefix: `${keyPrefix}{${appId}}` })
  queue.on('error', () => {})
  return queue
}

/** Messages in BullMQ's jobs in these states: a batch job (lib/delivery/batch-jobs.ts) carries several. */
export async function queuedMessages (queue: Queue, ...states: JobType[]): Promise<number> {
  const jobs = await queue.getJobs(states)
  return jobs.reduce((n, job) => n + (Array.isArray(job?.data?.batch) ? (job.data.batch as unknown[]).length : 1), 0)
}

/** The distinct message ids in BullMQ's jobs in these states (a message handed back by a batch is in both). */
export async function queuedIds (queue: Queue, ...states: JobType[]): Promise<Set<string>> {
  const ids = new Set<string>()
  for (const job of await queue.getJobs(states)) {
    const data = job?.data as { id?: string, batch?: Array<{ id: string }> } | undefined
    for (const message of data?.batch ?? [data ?? {}]) if (typeof message.id === 'string') ids.add(message.id)
  }
  return ids
}
