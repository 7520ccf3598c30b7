import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Redis } from 'ioredis'

export interface PrivateRedisOptions {
  /**
   * Keep the data across stop()/start(): an append-only file fsynced on every write
   * (`appendonly yes`, `appendfsync always`) in a temporary directory, so even a SIGKILL loses
   * nothing Redis acknowledged. The directory is removed by `cleanup()`.
   */
  persistent?: boolean
}

/**
 * A private redis-server for one test file, on a free port, that the test may stop and start again
 * (fault tests). Nothing is persisted unless `persistent` is set. We never FLUSHALL or stop a server
 * we did not start.
 */
export class PrivateRedis {
  private process: ChildProcess | null = null
  /** the data directory of a persistent server */
  readonly dir: string | null

  constructor (readonly port: number, options: PrivateRedisOptions = {}) {
    this.dir = options.persistent ? mkdtempSync(path.join(tmpdir(), 'wechat-redis-')) : null
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  get running (): boolean {
    return this.process !== null
  }

  async start (): Promise<void> {
    if (this.process) return
    const persistence = this.dir === null
      // (a replica still writes the RDB it receives: into the temp dir, not the test's working directory)
      ? ['--save', '', '--appendonly', 'no', '--dir', tmpdir(), '--dbfilename', `wechat-test-${this.port}.rdb`]
      : ['--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', this.dir]
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', ...persistence, '--daemonize', 'no', '--loglevel', 'warning'], { stdio: 'ignore' })
    this.process = child
    child.once('exit', () => { if (this.process === child) this.process = null })
    await waitForPing(this.port)
  }

  /**
   * SIGSTOP: the server keeps its connections but answers nothing (a stalled Redis, or a network
   * path that drops packets) until resume(). stop() and cleanup() end it either way.
   */
  pause (): void {
    this.process?.kill('SIGSTOP')
  }

  resume (): void {
    this.process?.kill('SIGCONT')
  }

  /** SIGKILL by default (a crash); `graceful` sends SIGTERM (Redis then fsyncs and exits). */
  async stop (graceful = false): Promise<void> {
    const child = this.process
    if (!child) return
    this.process = null
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve())
      child.kill(graceful ? 'SIGTERM' : 'SIGKILL')
    })
  }

  /** stop() and remove the data directory of a persistent server. */
  async cleanup (): Promise<void> {
    await this.stop()
    if (this.dir !== null) rmSync(this.dir, { recursive: true, force: true })
  }
}

export async function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

export async function startRedis (options: PrivateRedisOptions = {}): Promise<PrivateRedis> {
  const redis = new PrivateRedis(await freePort(), options)
  await redis.start()
  return redis
}

async function waitForPing (port: number): Promise<void> {
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    client.on('error', () => {})
    try {
      await client.connect()
      // A persistent server answers LOADING while it replays its append-only file.
      if (await client.ping() === 'PONG') { client.disconnect(); return }
    } catch {}
    client.disconnect()
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`redis-server on port ${port} did not start`)
}

/** A unique key prefix per test, so tests sharing one server (REDIS_URL) never see each other's keys. */
export function uniquePrefix (name: string): string {
  return `test:${name}:${process.pid}:${Math.random().toString(36).slice(2, 8)}:`
}

/** The Redis URL a test runs on: none for the memory store / in-process queue, else a private server (stopped at teardown). */
export async function redisFor (t: { teardown (fn: () => unknown): void }, kind: 'memory' | 'bullmq' | 'redis'): Promise<string | undefined> {
  if (kind === 'memory') return undefined
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  return redis.url
}

/**
 * Fault injection on the app's own Redis client: the first call of `method` that `when` accepts
 * stalls `redis` (SIGSTOP) for `ms`, then goes out, so it waits in the stalled server past the store's
 * deadline and runs when the server wakes. Answers whether the stall happened.
 */
export function stallOnCall (app: object, redis: PrivateRedis, method: string, ms: number, when: (args: unknown[]) => boolean = () => true): () => boolean {
  const client = (app as { redis: Record<string, unknown> }).redis
  const original = client[method] as (...args: unknown[]) => unknown
  let stalled = false
  client[method] = function (this: unknown, ...args: unknown[]) {
    if (!stalled && when(args)) {
      stalled = true
      redis.pause()
      setTimeout(() => redis.resume(), ms).unref()
    }
    return original.apply(this, args)
  }
  return () => stalled
}
