/**
 * The processes bench/hook.ts forks (this file, BENCH_HOOK_ROLE):
 * - `app`: Fastify with the plugin and the bench routes (hook-routes.ts), listening; answers
 *   `sample` (its CPU time and event-loop delay since the last sample), `drain` and `close`.
 *   With BENCH_HOOK_WORKER=off it does not work the BullMQ queue: the plugin has no option for
 *   that, so this bench-only switch stubs BullQueue#start (the web half of a web + worker fleet).
 * - `worker`: the plugin on the same Redis and key prefix, no routes: the queue worker of that fleet.
 */
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import fastifyRedis from '@fastify/redis'
import { wechatPush, BullQueue } from './built.js'
import { registerBenchRoutes } from './hook-routes.js'

export interface Sample { sysMicros: number, cpuMicros: number, eldP99: number, eldMax: number, heapMB: number }
export interface Drained { total: number, sent: number, failed: number, error?: string }

async function plugin (): Promise<FastifyInstance> {
  const redisUrl = process.env.REDIS_URL
  const app = Fastify({ logger: false })
  if (redisUrl) await app.register(fastifyRedis, { url: redisUrl, maxRetriesPerRequest: 1 })
  await app.register(wechatPush, {
    appId: process.env.APP_ID as string,
    appSecret: process.env.APP_SECRET as string,
    baseUrl: process.env.SIM_URL as string,
    keyPrefix: process.env.KEY_PREFIX as string
  })
  return app
}

function onCommand (app: FastifyInstance, handlers: Record<string, (command: { type: string, name?: string }) => Promise<unknown> | unknown>): void {
  process.on('message', (command: { type: string, name?: string }) => {
    if (command.type === 'close') {
      app.close().then(() => process.disconnect(), () => process.exit(1))
      return
    }
    const handler = handlers[command.type]
    if (!handler) return
    Promise.resolve(handler(command)).then(
      (answer) => process.send?.({ type: command.type, ...(answer as object) }),
      (err) => process.send?.({ type: command.type, error: String(err) })
    )
  })
}

async function appRole (): Promise<void> {
  if (process.env.BENCH_HOOK_WORKER === 'off') BullQueue.prototype.start = async function () {}
  const app = await plugin()
  registerBenchRoutes(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  await app.wechat.getToken()
  const eld = monitorEventLoopDelay({ resolution: 2 })
  eld.enable()
  let cpu = process.cpuUsage()
  let profiler: Session | undefined
  let profiles = 0
  let profileName = 'run'
  onCommand(app, {
    sample: (): Sample => {
      const used = process.cpuUsage(cpu)
      cpu = process.cpuUsage()
      const sample = { sysMicros: used.system, cpuMicros: used.user + used.system, eldP99: eld.percentile(99) / 1e6, eldMax: eld.max / 1e6, heapMB: Math.round(process.memoryUsage().heapUsed / 1e6) }
      eld.reset()
      return sample
    },
    // BENCH_HOOK_PROF_DIR: a CPU profile of one measured run only (not warm-up, drain or boot).
    'profile-start': async (command) => {
      profileName = command.name ?? 'run'
      profiler ??= new Session()
      profiler.connect()
      await profiler.post('Profiler.enable')
      await profiler.post('Profiler.start')
      return {}
    },
    'profile-stop': async () => {
      const session = profiler as Session
      const { profile } = await session.post('Profiler.stop')
      session.disconnect()
      const file = path.join(process.env.BENCH_HOOK_PROF_DIR as string, `${process.env.BENCH_HOOK_PROF_NAME ?? 'app'}-${profileName}-${++profiles}.cpuprofile`)
      writeFileSync(file, JSON.stringify(profile))
      return { file }
    },
    // Waits until every queued push has left the queue (whichever process works it).
    drain: async (): Promise<Drained> => {
      for (;;) {
        // (optional call: the same bench also runs against versions without handlerPushes())
        const pushes = (app.wechat as Partial<typeof app.wechat>).handlerPushes?.() ?? { waiting: 0, failed: 0 }
        const stats = await app.wechat.stats()
        if (pushes.waiting === 0 && stats.pending + stats.sending === 0) return { total: stats.total, sent: stats.sent, failed: stats.failed + stats.unknown + pushes.failed }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
  })
  const address = app.server.address()
  process.send?.({ type: 'ready', port: typeof address === 'object' && address ? address.port : 0 })
}

async function workerRole (): Promise<void> {
  const app = await plugin()
  await app.ready()
  await app.wechat.getToken()
  onCommand(app, {})
  process.send?.({ type: 'ready', port: 0 })
}

const role = process.env.BENCH_HOOK_ROLE === 'worker' ? workerRole : appRole
role().catch((err) => {
  console.error(err)
  process.exit(1)
})
