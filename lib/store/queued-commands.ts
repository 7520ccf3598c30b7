/**
 * ioredis puts the commands a dropped connection left unanswered back in the client's offline queue,
 * to resend them when it reconnects. A command of ours sent just before Redis went away waits there
 * (our own deadline answered its caller long ago). At close that is harmful: @fastify/redis closes the
 * client with quit(), which queues behind it and waits until ioredis gives up on the queue (20
 * reconnections by default: over a minute), and app.close() then rejects. So close() takes ours out
 * and fails them; the app's own commands are left as they are (what to do with them is its call).
 */

import { clientKeyPrefix } from './connection.js'

/** The part of ioredis' queued item (a Denque entry) this reads. */
interface QueuedItem { command?: { args?: unknown[], reject?: (err: Error) => void } }
interface OfflineQueue { length: number, toArray (): QueuedItem[], clear (): void, push (item: QueuedItem): void }

function offlineQueuesOf (client: unknown): OfflineQueue[] {
  const c = client as { offlineQueue?: OfflineQueue, isCluster?: boolean, nodes?: (role: string) => unknown[] }
  const queues: OfflineQueue[] = []
  if (isQueue(c.offlineQueue)) queues.push(c.offlineQueue)
  // (a Cluster queues in itself while it has no slots map, and in each node's client once it has)
  if (c.isCluster === true && typeof c.nodes === 'function') {
    for (const node of c.nodes('all')) {
      const queue = (node as { offlineQueue?: OfflineQueue }).offlineQueue
      if (isQueue(queue)) queues.push(queue)
    }
  }
  return queues
}

function isQueue (value: unknown): value is OfflineQueue {
  const q = value as Partial<OfflineQueue> | undefined
  return typeof q?.toArray === 'function' && typeof q.clear === 'function' && typeof q.push === 'function' && typeof q.length === 'number'
}

/**
 * Fail and remove the queued commands one of whose arguments starts with `keyRoot` (a key of ours),
 * also behind the client's own ioredis `keyPrefix` (added to the keys when a command is built). Returns how many.
 */
export function dropQueuedCommands (client: unknown, keyRoot: string, reason: string): number {
  const clientPrefix = clientKeyPrefix(client)
  const roots = clientPrefix !== '' ? [keyRoot, clientPrefix + keyRoot] : [keyRoot]
  const isOurs = (arg: unknown): boolean => {
    const text = typeof arg === 'string' ? arg : Buffer.isBuffer(arg) ? arg.toString('latin1') : undefined
    return text !== undefined && roots.some((root) => text.startsWith(root))
  }
  let dropped = 0
  for (const queue of offlineQueuesOf(client)) {
    if (queue.length === 0) continue
    const items = queue.toArray()
    const ours = new Set(items.filter((item) => item.command?.args?.some(isOurs) === true))
    if (ours.size === 0) continue
    queue.clear()
    for (const item of items) if (!ours.has(item)) queue.push(item)
    for (const item of ours) item.command?.reject?.(new Error(reason))
    dropped += ours.size
  }
  return dropped
}
