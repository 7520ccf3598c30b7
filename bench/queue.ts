/**
 * The queue, end to end: (a) queued sends/s (enqueue N, wait until all are 'sent') against direct
 * `wechat.send` at the same concurrency (the queue's concurrency), in-process queue on the memory
 * store and BullMQ on a private redis-server; (b) limiter accuracy: `limiter: { max: 200,
 * duration: 1000 }`, the rate the simulator actually saw.
 *
 * The simulator runs in a child process (sim-server.ts); the apps run here. Variants are
 * interleaved round by round (order rotated each round); the table quotes medians over rounds.
 *
 *   npx tsx bench/queue.ts    BENCH_QUEUE_N=2000 BENCH_ROUNDS=5 BENCH_QUEUE_CONCURRENCY=8 BENCH_LIMITER_ROUNDS=3 BENCH_LATENCY_MS=0
 */
import { performance } from 'node:perf_hooks'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import fastifyRedis from '@fastify/redis'
import { wechatPush, testing } from './built.js'
import type { SubscribeMessage } from '../lib/public-types.js'
import { startRedis } from '../test/helpers/redis-server.js'
import type { PrivateRedis } from '../test/helpers/redis-server.js'
import { SimChild } from './sim-child.js'
import { envNumber, formatTable, median, progress } from './stats.js'

const { DEMO_TEMPLATE_IDS } = testing

/** The limiter must hold the configured rate within this share (queued vs direct has no target: it is shown). */
export const TARGET_LIMITER_ERROR = 0.05
const LIMIT = { max: 200, duration: 1000 }
const BATCH = 500

let serial = 0
function message (): SubscribeMessage {
  serial++
  return {
    toUser: `oBench-queue-${serial}`,
    templateId: DEMO_TEMPLATE_IDS.orderShipped,
    page: `pages/order?id=${serial}`,
    data: { character_string1: `SO${serial}`, thing2: 'Blue ceramic mug x2', amount3: '¥58.00', time4: '2026-03-01 14:05', phrase5: '已发货' }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function pluginApp (sim: SimChild, name: string, queue: Record<string, unknown>, redisUrl?: string): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  if (redisUrl) await app.register(fastifyRedis, { url: redisUrl, maxRetriesPerRequest: 1 })
  await app.register(wechatPush, {
    appId: sim.appId,
    appSecret: sim.appSecret,
    baseUrl: sim.url,
    store: redisUrl ? 'redis' : 'memory',
    keyPrefix: `bench:queue:${name}:${process.pid}:`,
    queue
  })
  await app.ready()
  await app.wechat.getToken()
  return app
}

/** `concurrency` workers send back to back until `n` messages are sent; sends/s. */
async function direct (app: FastifyInstance, n: number, concurrency: number): Promise<number> {
  let left = n
  const start = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (left > 0) {
      left--
      await app.wechat.send(message())
    }
  }))
  return n / ((performance.now() - start) / 1000)
}

/** Enqueue `n` (batches of 500, all at once), then wait until the stats say all are sent; sends/s. */
async function queued (app: FastifyInstance, n: number): Promise<number> {
  const before = (await app.wechat.stats()).sent
  const start = performance.now()
  const batches: Promise<unknown>[] = []
  for (let done = 0; done < n; done += BATCH) batches.push(app.wechat.enqueue(Array.from({ length: Math.min(BATCH, n - done) }, message)))
  await Promise.all(batches)
  for (;;) {
    const stats = await app.wechat.stats()
    if (stats.failed + stats.unknown > 0) throw new Error(`${stats.failed + stats.unknown} queued messages failed`)
    if (stats.sent - before >= n) break
    await sleep(5)
  }
  return n / ((performance.now() - start) / 1000)
}

interface LimiterRun { rate: number, windows: number[] }

/**
 * Enqueue `windows × max` messages under the limiter and watch the simulator's accepted count
 * (polled over IPC every few ms). Window k+1 starts when the count first exceeds k × max. The rate
 * is taken over the steady windows: from the start of the second window to the start of the last
 * one, (windows − 2) × max messages. The first window is left out (it starts while the enqueue is
 * still busy, and BullMQ's window opens when the first job is taken, before its call lands); the
 * last one is a burst that would not end a window.
 */
async function limited (app: FastifyInstance, sim: SimChild, windows: number): Promise<LimiterRun> {
  const n = windows * LIMIT.max
  const base = (await sim.stats()).accepted
  const batches: Promise<unknown>[] = []
  for (let done = 0; done < n; done += BATCH) batches.push(app.wechat.enqueue(Array.from({ length: Math.min(BATCH, n - done) }, message)))
  await Promise.all(batches)
  const starts: number[] = []
  for (;;) {
    const count = (await sim.stats()).accepted - base
    const now = performance.now()
    while (starts.length < windows && count > starts.length * LIMIT.max) starts.push(now)
    if (count >= n) break
    await sleep(2)
  }
  const lengths = starts.slice(1).map((t, i) => t - (starts[i] as number))
  return { rate: ((windows - 2) * LIMIT.max) / (((starts[windows - 1] as number) - (starts[1] as number)) / 1000), windows: lengths }
}

export interface QueueBenchResult { table: string, ok: boolean }

export async function runQueueBench (): Promise<QueueBenchResult> {
  const n = envNumber('BENCH_QUEUE_N', 2000)
  const rounds = envNumber('BENCH_ROUNDS', 5)
  const concurrency = envNumber('BENCH_QUEUE_CONCURRENCY', 8)
  const limiterRounds = envNumber('BENCH_LIMITER_ROUNDS', 3)
  const latencyMs = Number(process.env.BENCH_LATENCY_MS ?? 0)
  const windows = 7

  const apps: FastifyInstance[] = []
  let sim: SimChild | undefined
  let redis: PrivateRedis | undefined
  try {
    sim = await SimChild.start()
    if (latencyMs > 0) await sim.setLatency(latencyMs)
    redis = await startRedis()
    const open = async (name: string, queue: Record<string, unknown>, redisUrl?: string): Promise<FastifyInstance> => {
      const app = await pluginApp(sim as SimChild, name, queue, redisUrl)
      apps.push(app)
      return app
    }
    const memory = await open('memory', { concurrency })
    const bull = await open('bullmq', { concurrency }, redis.url)
    const memoryLimited = await open('memory-limited', { concurrency, limiter: LIMIT })
    const bullLimited = await open('bullmq-limited', { concurrency, limiter: LIMIT }, redis.url)
    progress(`queue: simulator ${sim.url}${latencyMs ? ` (+${latencyMs} ms)` : ''}, redis ${redis.url}; N=${n}, concurrency ${concurrency}, ${rounds} rounds`)

    // Warm-up: pools, scripts, JIT.
    for (const app of [memory, bull]) {
      await direct(app, 500, concurrency)
      await queued(app, 500)
    }

    interface Pair { name: string, app: FastifyInstance, direct: number[], queued: number[] }
    const pairs: Pair[] = [
      { name: 'memory store, in-process queue', app: memory, direct: [], queued: [] },
      { name: 'Redis store, BullMQ queue', app: bull, direct: [], queued: [] }
    ]
    const steps = pairs.flatMap((pair) => [{ pair, kind: 'direct' as const }, { pair, kind: 'queued' as const }])
    for (let round = 0; round < rounds; round++) {
      for (let s = 0; s < steps.length; s++) {
        const { pair, kind } = steps[(s + round) % steps.length] as typeof steps[number]
        const rate = kind === 'direct' ? await direct(pair.app, n, concurrency) : await queued(pair.app, n)
        pair[kind].push(rate)
        progress(`round ${round + 1}/${rounds} ${pair.name}, ${kind}: ${Math.round(rate)} sends/s`)
      }
    }

    const limiters = [{ name: 'in-process queue', app: memoryLimited, runs: [] as LimiterRun[] }, { name: 'BullMQ queue', app: bullLimited, runs: [] as LimiterRun[] }]
    for (let round = 0; round < limiterRounds; round++) {
      for (let i = 0; i < limiters.length; i++) {
        const limiter = limiters[(i + round) % limiters.length] as typeof limiters[number]
        const run = await limited(limiter.app, sim, windows)
        limiter.runs.push(run)
        progress(`limiter round ${round + 1}/${limiterRounds} ${limiter.name}: ${run.rate.toFixed(1)}/s (windows ${run.windows.map((w) => w.toFixed(0)).join(', ')} ms)`)
      }
    }

    let ok = true
    const throughputRows = pairs.map((pair) => {
      const ratios = pair.queued.map((q, i) => q / (pair.direct[i] as number))
      const ratio = median(ratios)
      return [
        pair.name,
        Math.round(median(pair.direct)).toLocaleString('en-US'),
        Math.round(median(pair.queued)).toLocaleString('en-US'),
        `${ratio.toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`
      ]
    })
    const limiterRows = limiters.map((limiter) => {
      const rates = limiter.runs.map((r) => r.rate)
      const rate = median(rates)
      const error = rate / (LIMIT.max * 1000 / LIMIT.duration) - 1
      const pass = Math.abs(error) <= TARGET_LIMITER_ERROR
      ok &&= pass
      return [
        limiter.name,
        `${LIMIT.max}/s`,
        `${rate.toFixed(1)}/s (${Math.min(...rates).toFixed(1)}–${Math.max(...rates).toFixed(1)})`,
        `${error >= 0 ? '+' : ''}${(error * 100).toFixed(1)} %`,
        `within ±${TARGET_LIMITER_ERROR * 100} %: ${pass ? 'ok' : 'MISSED'}`
      ]
    })
    const stats = await sim.stats()
    progress(`simulator accepted ${stats.accepted} messages in total`)
    const title1 = `queued end to end vs direct send — N=${n} per round, concurrency ${concurrency} (direct: ${concurrency} senders; queue: concurrency ${concurrency}), ${rounds} interleaved rounds, medians; ratio = median of per-round ratios (min–max)`
    const table1 = formatTable(['store, queue', 'direct sends/s', 'queued sends/s (enqueue → all sent)', 'ratio queued / direct'], throughputRows)
    const title2 = `limiter accuracy — limiter { max: ${LIMIT.max}, duration: ${LIMIT.duration} }, ${windows * LIMIT.max} messages per run, rate seen by the simulator over the ${windows - 2} steady windows (first and last left out), ${limiterRounds} rounds, median (min–max)`
    const table2 = formatTable(['queue', 'configured', 'measured', 'error', 'target'], limiterRows)
    return { table: `${title1}\n\n${table1}\n\n${title2}\n\n${table2}\n`, ok }
  } finally {
    for (const app of apps) await app.close()
    await sim?.close()
    await redis?.stop()
  }
}

if (require.main === module) {
  runQueueBench().then(({ table }) => { process.stdout.write(`\n${table}`) }, (err) => {
    console.error(err)
    process.exitCode = 1
  })
}
