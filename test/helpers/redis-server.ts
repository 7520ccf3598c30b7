import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'

/**
 * A private redis-server for one test file, on a free port, that the test may stop and start again
 * (fault tests). Nothing is persisted. We never FLUSHALL or stop a server we did not start.
 */
export class PrivateRedis {
  private process: ChildProcess | null = null
  constructor (readonly port: number) {}

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start (): Promise<void> {
    if (this.process) return
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'], { stdio: 'ignore' })
    this.process = child
    child.once('exit', () => { if (this.process === child) this.process = null })
    await waitForPing(this.port)
  }

  async stop (): Promise<void> {
    const child = this.process
    if (!child) return
    this.process = null
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve())
      child.kill('SIGKILL')
    })
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

export async function startRedis (): Promise<PrivateRedis> {
  const redis = new PrivateRedis(await freePort())
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
