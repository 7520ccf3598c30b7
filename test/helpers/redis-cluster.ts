/**
 * A private Redis Cluster for one test file: N masters (and optionally a replica each), every node
 * a `redis-server --cluster-enabled yes` on free ports, joined with `redis-cli --cluster create`.
 * Nodes can be killed and restarted (failover tests); `stop()` kills them all and removes their
 * directories. Nothing is persisted (`--save '' --appendonly no`): a restarted node rejoins with its
 * cluster config only, so what survives a failover is what its replica had received.
 */
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Cluster, Redis } from 'ioredis'
import type { ClusterOptions } from 'ioredis'
import { freePort } from './redis-server.js'

const HOST = '127.0.0.1'
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Every redis-server these helpers started and their directories, cleaned up if the test process exits without teardown. */
const running = new Set<ChildProcess>()
const dirs = new Set<string>()
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/** Free ports for a node: never the machine's shared 6379, never one handed out twice here. */
const handedOut = new Set<number>([6379])
export async function freshPort (): Promise<number> {
  for (;;) {
    const port = await freePort()
    if (!handedOut.has(port)) { handedOut.add(port); return port }
  }
}

/** One redis-server process (cluster node, sentinel-monitored node or sentinel), restartable. */
export class RedisNode {
  private child: ChildProcess | null = null
  constructor (readonly port: number, readonly dir: string, private readonly args: string[]) {}

  get running (): boolean {
    return this.child !== null
  }

  async start (): Promise<void> {
    if (this.child) return
    const child = spawn('redis-server', [...this.args, '--port', String(this.port), '--bind', HOST, '--dir', this.dir,
      '--daemonize', 'no', '--loglevel', 'warning', '--logfile', path.join(this.dir, `redis-${this.port}.log`)], { stdio: 'ignore' })
    this.child = child
    running.add(child)
    child.once('exit', () => {
      running.delete(child)
      if (this.child === child) this.child = null
    })
    await until(`redis-server on ${this.port} answers PING`, async () => {
      if (!this.child) throw new Error(`redis-server on ${this.port} exited at start (see ${this.dir}/redis-${this.port}.log)`)
      return (await command(this.port, 'PING').catch(() => null)) === 'PONG'
    }, 10_000)
  }

  /** SIGKILL: a crash, nothing flushed. */
  async stop (): Promise<void> {
    const child = this.child
    if (!child) return
    this.child = null
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve())
      child.kill('SIGKILL')
    })
  }

  /** A one-off admin command on this node. */
  command (...args: (string | number)[]): Promise<unknown> {
    return command(this.port, ...args)
  }

  /** Several commands on one connection (`WAIT` counts the writes of its own connection). */
  async session<T> (work: (client: Redis) => Promise<T>): Promise<T> {
    const client = new Redis({ host: HOST, port: this.port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectTimeout: 1000 })
    client.on('error', () => {})
    try {
      await client.connect()
      return await work(client)
    } finally {
      client.disconnect()
    }
  }

  /** `INFO <section>` as key → value. */
  async info (section: string): Promise<Record<string, string>> {
    const text = String(await this.command('INFO', section))
    return Object.fromEntries(text.split('\r\n').filter((line) => line.includes(':')).map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]))
  }
}

/** One command on a short-lived connection that never retries (admin and probes). */
export async function command (port: number, ...args: (string | number)[]): Promise<unknown> {
  const client = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectTimeout: 1000 })
  client.on('error', () => {})
  try {
    await client.connect()
    return await client.call(String(args[0]), ...args.slice(1).map(String))
  } finally {
    client.disconnect()
  }
}

/** Polls `check` until true; throws naming `what` after `timeoutMs`. */
export async function until (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    await sleep(everyMs)
  }
}

/** Nothing on disk; a replica's full sync starts at once (Redis 7 waits 5 s for more replicas by default). */
export const NO_PERSISTENCE = ['--save', '', '--appendonly', 'no', '--repl-diskless-sync-delay', '0']

export function tempDir (name: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `wechat-${name}-`))
  dirs.add(dir)
  return dir
}

export interface ClusterSetup {
  /** default 3 */
  masters?: number
  /** replicas per master, default 0 */
  replicas?: number
  /** `cluster-node-timeout`: how long before a silent master counts as failed (default 2000 ms) */
  nodeTimeout?: number
}

export interface SlotOwner { master: RedisNode, replicas: RedisNode[] }

export class PrivateCluster {
  /** the ioredis clients made by client(), disconnected by stop() if the test did not */
  private readonly clients = new Set<Cluster>()

  constructor (readonly nodes: RedisNode[], private readonly root: string, private readonly replicas: number) {}

  get startupNodes (): { host: string, port: number }[] {
    return this.nodes.map((node) => ({ host: HOST, port: node.port }))
  }

  /** A new ioredis Cluster on this cluster (the caller closes it; stop() disconnects stragglers). */
  client (options: ClusterOptions = {}): Cluster {
    const cluster = new Cluster(this.startupNodes, options)
    cluster.on('error', () => {}) // node failures are what these tests are about
    this.clients.add(cluster)
    cluster.once('end', () => this.clients.delete(cluster))
    return cluster
  }

  node (port: number): RedisNode {
    const node = this.nodes.find((n) => n.port === port)
    if (!node) throw new Error(`no node on port ${port}`)
    return node
  }

  /** Any running node, to ask about the cluster. */
  private async probe (...args: (string | number)[]): Promise<unknown> {
    let last: unknown
    for (const node of this.nodes.filter((n) => n.running)) {
      try { return await node.command(...args) } catch (err) { last = err }
    }
    throw last ?? new Error('no node is running')
  }

  async slotOf (key: string): Promise<number> {
    return Number(await this.probe('CLUSTER', 'KEYSLOT', key))
  }

  /** The master serving `key`'s slot and its replicas, as a running node sees it (CLUSTER NODES). */
  async ownerOf (key: string): Promise<SlotOwner> {
    const slot = await this.slotOf(key)
    const view = parseNodes(String(await this.probe('CLUSTER', 'NODES')))
    const master = view.find((n) => n.slots.some(([lo, hi]) => lo <= slot && slot <= hi))
    if (!master) throw new Error(`slot ${slot} is not served`)
    return { master: this.node(master.port), replicas: view.filter((n) => n.masterId === master.id).map((n) => this.node(n.port)) }
  }

  /**
   * Every running node says cluster_state:ok and flags no node as failing, they agree on who serves
   * each slot, every slot is served by a running master, every running replica has its link to its
   * master up, and each master has its replicas.
   */
  async healthy (): Promise<boolean> {
    try {
      const live = this.nodes.filter((n) => n.running)
      const views = new Set<string>()
      for (const node of live) {
        const info = String(await node.command('CLUSTER', 'INFO'))
        if (!info.includes('cluster_state:ok')) return false
        const view = parseNodes(String(await node.command('CLUSTER', 'NODES')))
        if (view.some((n) => n.flags.includes('fail') || n.flags.includes('fail?') || n.flags.includes('handshake'))) return false
        const masters = view.filter((n) => n.slots.length > 0)
        if (masters.some((m) => !this.node(m.port).running || view.filter((n) => n.masterId === m.id).length !== this.replicas)) return false
        views.add(masters.map((m) => `${m.port}:${JSON.stringify(m.slots)}`).sort().join(','))
        const replication = String(await node.command('INFO', 'replication'))
        if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) return false
      }
      return views.size === 1
    } catch {
      return false
    }
  }

  async waitHealthy (timeoutMs = 30_000): Promise<void> {
    await until('the cluster is healthy', () => this.healthy(), timeoutMs, 100)
  }

  /** Kill everything, remove every directory. Safe to call twice. */
  async stop (): Promise<void> {
    for (const client of this.clients) client.disconnect()
    await Promise.all(this.nodes.map((node) => node.stop()))
    rmSync(this.root, { recursive: true, force: true })
  }
}

interface NodeView { id: string, port: number, flags: string[], masterId: string | null, slots: [number, number][] }

/** `CLUSTER NODES`: `<id> <ip:port@cport> <flags> <master id|-> <ping> <pong> <epoch> <link> <slot ranges...>` */
function parseNodes (text: string): NodeView[] {
  return text.trim().split('\n').map((line) => {
    const [id, address, flags, masterId, , , , , ...slots] = line.trim().split(' ')
    return {
      id,
      port: Number(address.split('@')[0].split(':').pop()),
      flags: flags.split(','),
      masterId: masterId === '-' ? null : masterId,
      slots: slots.filter((s) => !s.startsWith('[')).map((s) => {
        const [lo, hi] = s.split('-').map(Number)
        return [lo, hi ?? lo] as [number, number]
      })
    }
  })
}

/** Start `masters × (1 + replicas)` nodes and join them into one cluster; resolves when it is healthy. */
export async function startCluster (setup: ClusterSetup = {}): Promise<PrivateCluster> {
  const masters = setup.masters ?? 3
  const replicas = setup.replicas ?? 0
  const root = tempDir('cluster')
  const nodes: RedisNode[] = []
  for (let i = 0; i < masters * (1 + replicas); i++) {
    const port = await freshPort()
    const busPort = await freshPort()
    const dir = path.join(root, String(port))
    mkdirSync(dir)
    nodes.push(new RedisNode(port, dir, [
      '--cluster-enabled', 'yes', '--cluster-port', String(busPort), '--cluster-config-file', path.join(dir, 'nodes.conf'),
      '--cluster-node-timeout', String(setup.nodeTimeout ?? 2000), ...NO_PERSISTENCE
    ]))
  }
  const cluster = new PrivateCluster(nodes, root, replicas)
  try {
    await Promise.all(nodes.map((node) => node.start()))
    await new Promise<void>((resolve, reject) => {
      execFile('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `${HOST}:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
        { timeout: 30_000 }, (err, stdout) => err ? reject(new Error(`redis-cli --cluster create failed: ${err.message}\n${stdout}`)) : resolve())
    })
    await cluster.waitHealthy()
  } catch (err) {
    await cluster.stop()
    throw err
  }
  return cluster
}
