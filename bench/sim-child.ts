import path from 'node:path'
import type { ChildProcess } from 'node:child_process'
import type { SimEndpoint, SimTokenFetches } from '../lib/testing/index.js'
import { exited, forkTs, nextMessage } from './fork.js'

export interface SimStats {
  counters: Record<SimEndpoint, number>
  tokenFetches: SimTokenFetches
  accepted: number
}

/** Parent side of `sim-server.ts`: the simulator's url and credentials, a few remote controls, close. */
export class SimChild {
  private constructor (
    private readonly child: ChildProcess,
    readonly url: string,
    readonly appId: string,
    readonly appSecret: string
  ) {}

  static async start (): Promise<SimChild> {
    const child = forkTs(path.join(__dirname, 'sim-server.ts'))
    try {
      const ready = await nextMessage<{ url: string, appId: string, appSecret: string }>(child, 'ready')
      return new SimChild(child, ready.url, ready.appId, ready.appSecret)
    } catch (err) {
      child.kill('SIGKILL')
      throw err
    }
  }

  /** The child's process id (benchmarks read its CPU time). */
  get pid (): number | undefined {
    return this.child.pid
  }

  async stats (): Promise<SimStats> {
    const answer = nextMessage<SimStats>(this.child, 'stats')
    this.child.send({ type: 'stats' })
    return answer
  }

  async setLatency (ms: number): Promise<void> {
    const answer = nextMessage(this.child, 'latency')
    this.child.send({ type: 'latency', ms })
    await answer
  }

  async close (): Promise<void> {
    if (this.child.connected) this.child.send({ type: 'close' })
    await exited(this.child)
  }
}
