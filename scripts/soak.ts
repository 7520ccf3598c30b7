/**
 * `npm run soak`: steady load on one app instance for 30 minutes (not in CI), its memory sampled.
 *
 * The app (this process) runs the plugin on a private redis-server (Redis store, durable BullMQ
 * queue) and pushes a steady mix of `wechat.send`, `wechat.enqueue` and handler pushes
 * (`reply.wechatPush` through `app.inject`) to the WeChat simulator, which runs in its own process
 * (bench/sim-server.ts) so that its logs do not count against the app. Every SOAK_SAMPLE_SECONDS
 * a full GC runs and RSS and heapUsed are sampled. After SOAK_WARMUP_MINUTES the growth of both is
 * measured (last sample minus first after warm-up, and a least-squares slope).
 * Target: no growth beyond 20 MB after warm-up. Exits 1 when it is missed.
 *
 * Env: SOAK_MINUTES (30), SOAK_WARMUP_MINUTES (3, or a tenth of a shorter run), SOAK_RATE
 * (messages/s, 300), SOAK_SAMPLE_SECONDS (10).
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import Fastify from 'fastify'
import fastifyRedis from '@fastify/redis'
import wechatPush from '../lib/index.js'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import type { SubscribeMessage } from '../lib/public-types.js'
import { startRedis } from '../test/helpers/redis-server.js'
import { SimChild } from '../bench/sim-child.js'

setFlagsFromString('--expose_gc')
const gc = runInNewContext('gc') as () => void

const MB = 1024 * 1024
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

function env (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number (got '${raw}')`)
  return value
}

function log (line: string): void {
  process.stderr.write(`[soak] ${line}\n`)
}

interface Sample { at: number, rss: number, heap: number, done: number }

/** Least-squares slope of y over x. */
function slope (xs: number[], ys: number[]): number {
  const n = xs.length
  if (n < 2) return 0
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) { num += (xs[i] - mx) * (ys[i] - my); den += (xs[i] - mx) ** 2 }
  return den === 0 ? 0 : num / den
}

async function main (): Promise<void> {
  const minutes = env('SOAK_MINUTES', 30)
  const warmup = env('SOAK_WARMUP_MINUTES', Math.min(3, minutes / 10))
  const rate = env('SOAK_RATE', 300)
  const every = env('SOAK_SAMPLE_SECONDS', 10)

  const sim = await SimChild.start()
  const redis = await startRedis()
  const app = Fastify()
  await app.register(fastifyRedis, { url: redis.url })
  await app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, keyPrefix: 'soak:' })
  let serial = 0
  const message = (): SubscribeMessage => {
    serial++
    return {
      toUser: `oSoak-${serial % 5000}`,
      templateId: DEMO_TEMPLATE_IDS.orderShipped,
      page: `pages/order?id=${serial}`,
      data: { character_string1: `SO${serial}`, thing2: 'Blue ceramic mug x2', amount3: '¥58.00', time4: '2026-03-01 14:05', phrase5: '已发货' }
    }
  }
  app.post('/ship', async (_request, reply) => {
    reply.wechatPush(message())
    return { ok: true }
  })
  await app.ready()

  const counts = { send: 0, enqueue: 0, hook: 0, failed: 0 }
  const flight = { n: 0 }
  const fire = (i: number): void => {
    flight.n++
    const work = i % 3 === 0
      ? app.wechat.send(message()).then(() => { counts.send++ })
      : i % 3 === 1
        ? app.wechat.enqueue(message()).then(() => { counts.enqueue++ })
        : app.inject({ method: 'POST', url: '/ship' }).then(() => { counts.hook++ })
    work.catch(() => { counts.failed++ }).finally(() => { flight.n-- })
  }

  const samples: Sample[] = []
  const t0 = Date.now()
  const end = t0 + minutes * 60_000
  let issued = 0
  let nextSample = t0
  log(`${minutes} min at ${rate} messages/s (send / enqueue / handler push), warm-up ${warmup} min, a sample every ${every} s`)
  while (Date.now() < end) {
    const due = Math.floor(((Date.now() - t0) / 1000) * rate)
    while (issued < due && flight.n < 1000) fire(issued++)
    if (Date.now() >= nextSample) {
      gc()
      const memory = process.memoryUsage()
      samples.push({ at: (Date.now() - t0) / 60_000, rss: memory.rss / MB, heap: memory.heapUsed / MB, done: counts.send + counts.enqueue + counts.hook })
      const s = samples[samples.length - 1]
      if (samples.length % Math.max(1, Math.round(60 / every)) === 1) log(`t=${s.at.toFixed(1)} min rss ${s.rss.toFixed(1)} MB heap ${s.heap.toFixed(1)} MB, ${s.done} pushed, ${counts.failed} failed, ${flight.n} in flight`)
      nextSample += every * 1000
    }
    await sleep(20)
  }
  while (flight.n > 0) await sleep(50)
  const stats = await app.wechat.stats()
  const simStats = await sim.stats()
  await app.close()
  await redis.cleanup()
  await sim.close()

  const after = samples.filter((s) => s.at >= warmup)
  const first = after[0] ?? samples[0]
  const last = after[after.length - 1] ?? samples[samples.length - 1]
  const rssGrowth = last.rss - first.rss
  const heapGrowth = last.heap - first.heap
  const rssSlope = slope(after.map((s) => s.at), after.map((s) => s.rss))
  const heapSlope = slope(after.map((s) => s.at), after.map((s) => s.heap))
  const maxRss = Math.max(...after.map((s) => s.rss))
  const table = [
    '| minute | RSS MB | heapUsed MB (after GC) | messages pushed |',
    '|--------|--------|------------------------|-----------------|',
    ...samples.filter((_, i) => i % Math.max(1, Math.round(60 / every)) === 0 || i === samples.length - 1)
      .map((s) => `| ${s.at.toFixed(1).padStart(6)} | ${s.rss.toFixed(1).padStart(6)} | ${s.heap.toFixed(1).padStart(22)} | ${String(s.done).padStart(15)} |`)
  ].join('\n')
  const ok = rssGrowth <= 20 && heapGrowth <= 20
  process.stdout.write(`
${table}

| metric | measured | target |
|---|---|---|
| run | ${minutes} min at ${rate} messages/s; ${counts.send} sends, ${counts.enqueue} enqueues, ${counts.hook} handler pushes, ${counts.failed} failed calls | |
| delivered (simulator accepted) | ${simStats.accepted}; stats(): sent ${stats.sent}, failed ${stats.failed}, pending ${stats.pending + stats.sending} | |
| RSS after warm-up (${warmup} min) | ${first.rss.toFixed(1)} → ${last.rss.toFixed(1)} MB (${rssGrowth >= 0 ? '+' : ''}${rssGrowth.toFixed(1)} MB; slope ${rssSlope.toFixed(2)} MB/min; max ${maxRss.toFixed(1)} MB) | ≤ +20 MB: ${rssGrowth <= 20 ? 'ok' : 'MISSED'} |
| heapUsed after warm-up, after a full GC | ${first.heap.toFixed(1)} → ${last.heap.toFixed(1)} MB (${heapGrowth >= 0 ? '+' : ''}${heapGrowth.toFixed(1)} MB; slope ${heapSlope.toFixed(2)} MB/min) | ≤ +20 MB: ${heapGrowth <= 20 ? 'ok' : 'MISSED'} |
`)
  if (!ok) process.exitCode = 1
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 2
})
