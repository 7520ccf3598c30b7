import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { ReplicasUnconfirmedError } from './queue.js'

/**
 * queue.replicas (README "Scaling out"): an add resolves only once that many replicas have its
 * jobs. WAIT on our own add connection covers exactly the writes made on it so far: these jobs.
 * Redis replicates asynchronously; without this, a failover can drop an add the master had
 * acknowledged. (Refused on a Cluster at boot, setup.ts: WAIT has no key to route by.)
 */
export async function confirmReplicas (connection: Redis, replicas: { count: number, timeoutMs: number }): Promise<void> {
  let acked: number
  try {
    acked = await connection.wait(replicas.count, replicas.timeoutMs)
  } catch (err) {
    // The jobs were added; only their confirmation failed (the connection dropped in a failover,
    // WAIT refused by an ACL or a proxy): unconfirmed, not "not queued" (that would undo them).
    throw new ReplicasUnconfirmedError(`the replicas' confirmation failed (${(err as Error).message}): the jobs may be queued or lost in a failover`, { cause: err })
  }
  if (acked < replicas.count) {
    throw new ReplicasUnconfirmedError(`${acked} of ${replicas.count} replica(s) confirmed the jobs within ${replicas.timeoutMs} ms (queue.replicas): they may be queued or lost in a failover`)
  }
}

/**
 * queue.replicas against a Redis with fewer replicas connected: every enqueue would wait the
 * timeout and be refused (while its jobs still run on the master). Said once at boot; not an
 * error, since replicas may connect later.
 */
export async function warnFewReplicas (client: Redis, wanted: number, log: FastifyBaseLogger): Promise<void> {
  try {
    const connected = Number(/connected_slaves:(\d+)/.exec(await client.info('replication'))?.[1] ?? 0)
    if (connected < wanted) log.warn({ wanted, connected }, `wechat: queue.replicas is ${wanted} but the Redis master has ${connected} replica(s) connected: each enqueue will wait queue.replicaTimeout and be refused as unconfirmed (its jobs still run on the master)`)
  } catch {}
}
