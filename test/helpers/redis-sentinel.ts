/**
 * A private Sentinel setup for one test file: one master, one replica and one sentinel (quorum 1),
 * each a redis-server on free ports with its files in a temporary directory. `failover()` forces a
 * failover (`SENTINEL FAILOVER`) and `kill()` crashes the master; `stop()` kills everything and
 * removes the directory. Nothing is persisted.
 */
import { rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { freshPort, NO_PERSISTENCE, RedisNode, tempDir, until } from './redis-cluster.js'

const HOST = '127.0.0.1'
export const MASTER_NAME = 'wechat-test'

export interface SentinelSetup {
  /** `down-after-milliseconds`: how long a silent master takes to count as down (default 1000) */
  downAfter?: number
  /** more redis-server arguments for both data nodes (e.g. `min-replicas-to-write`) */
  args?: string[]
}

export class PrivateSentinel {
  constructor (readonly nodes: [RedisNode, RedisNode], readonly sentinel: RedisNode, private readonly root: string) {}

  readonly name = MASTER_NAME

  /** What an app passes to @fastify/redis (or ioredis): `{ sentinels, name }`. */
  get sentinels (): { host: string, port: number }[] {
    return [{ host: HOST, port: this.sentinel.port }]
  }

  node (port: number): RedisNode {
    const node = this.nodes.find((n) => n.port === port)
    if (!node) throw new Error(`no node on port ${port}`)
    return node
  }

  /** The master, as the sentinel announces it. */
  async master (): Promise<RedisNode> {
    const [, port] = await this.sentinel.command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.name) as [string, string]
    return this.node(Number(port))
  }

  async replica (): Promise<RedisNode> {
    const master = await this.master()
    return this.nodes.find((n) => n !== master) as RedisNode
  }

  /**
   * The sentinel's master is a running master, the other node replicates it with its link up, and
   * the sentinel lists that replica as healthy (so a failover has somewhere to go).
   */
  async healthy (): Promise<boolean> {
    try {
      const master = await this.master()
      const replica = this.nodes.find((n) => n !== master) as RedisNode
      if (!master.running || !replica.running) return false
      if ((await master.info('replication')).role !== 'master') return false
      const link = await replica.info('replication')
      if (link.role !== 'slave' || link.master_link_status !== 'up' || Number(link.master_port) !== master.port) return false
      const known = await this.sentinel.command('SENTINEL', 'REPLICAS', this.name) as string[][]
      return known.some((fields) => {
        const entry = Object.fromEntries(fields.flatMap((v, i) => i % 2 === 0 ? [[v, fields[i + 1]]] : []))
        return Number(entry.port) === replica.port && entry.flags === 'slave' && entry['master-link-status'] === 'ok'
      })
    } catch {
      return false
    }
  }

  async waitHealthy (timeoutMs = 30_000): Promise<void> {
    await until('the sentinel setup is healthy', () => this.healthy(), timeoutMs, 100)
  }

  /** `SENTINEL FAILOVER`: promote the replica now, without agreement; the old master is demoted later. */
  async failover (): Promise<void> {
    await this.sentinel.command('SENTINEL', 'FAILOVER', this.name)
  }

  /** Resolves when the sentinel announces `port`'s node as the master and that node says it is one. */
  async waitMaster (port: number, timeoutMs = 30_000): Promise<void> {
    await until(`${port} is the master`, async () => {
      try {
        return (await this.master()).port === port && (await this.node(port).info('replication')).role === 'master'
      } catch {
        return false
      }
    }, timeoutMs, 100)
  }

  async stop (): Promise<void> {
    await Promise.all([this.sentinel.stop(), ...this.nodes.map((node) => node.stop())])
    rmSync(this.root, { recursive: true, force: true })
  }
}

/** Master, replica (link up), then the sentinel (it finds the replica on its first INFO). */
export async function startSentinel (setup: SentinelSetup = {}): Promise<PrivateSentinel> {
  const root = tempDir('sentinel')
  const masterPort = await freshPort()
  const replicaPort = await freshPort()
  const sentinelPort = await freshPort()
  const extra = setup.args ?? []
  const master = new RedisNode(masterPort, root, [...NO_PERSISTENCE, ...extra])
  const replica = new RedisNode(replicaPort, root, [...NO_PERSISTENCE, ...extra, '--replicaof', HOST, String(masterPort)])
  const config = path.join(root, 'sentinel.conf')
  writeFileSync(config, [
    `sentinel monitor ${MASTER_NAME} ${HOST} ${masterPort} 1`,
    `sentinel down-after-milliseconds ${MASTER_NAME} ${setup.downAfter ?? 1000}`,
    `sentinel failover-timeout ${MASTER_NAME} 10000`,
    `sentinel parallel-syncs ${MASTER_NAME} 1`,
    ''
  ].join('\n'))
  const sentinel = new RedisNode(sentinelPort, root, [config, '--sentinel'])
  const setupDone = new PrivateSentinel([master, replica], sentinel, root)
  try {
    await master.start()
    await replica.start()
    await until('the replica is in sync', async () => (await replica.info('replication').catch(() => ({} as Record<string, string>))).master_link_status === 'up', 10_000)
    await sentinel.start()
    await setupDone.waitHealthy()
  } catch (err) {
    await setupDone.stop()
    throw err
  }
  return setupDone
}
