/**
 * `wechat.send` throughput and latency against raw undici POSTs to the same simulator, at the same
 * concurrency, memory and Redis stores. The simulator runs in a child process (sim-server.ts), so
 * this process runs only the client side. Variants are interleaved round by round (order rotated
 * each round) and the table quotes medians over rounds; the ratio is the median of the per-round
 * ratios ours/raw, each pair measured back to back.
 *
 *   npx tsx bench/send.ts        BENCH_SECONDS=3 BENCH_ROUNDS=5 BENCH_CONCURRENCY=64 BENCH_WARMUP_SECONDS=2
 */
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import fastifyRedis from '@fastify/redis'
import { Redis } from 'ioredis'
import { Pool } from 'undici'
import { wechatPush } from './built.js'
import { shippedMessage } from '../test/helpers/app.js'
import { startRedis } from '../test/helpers/redis-server.js'
import type { PrivateRedis } from '../test/helpers/redis-server.js'
import { SimChild } from './sim-child.js'
import { envNumber, formatTable, median, percentile, progress } from './stats.js'

const SEND_PATH = '/cgi-bin/message/subscribe/send'
/** Ours must reach at least this share of raw undici's throughput. */
export const TARGET_RATIO = 0.85

type SendFn = () => Promise<void>

interface Variant { name: string, raw: boolean, send: SendFn }

interface RoundResult {
  sends: number
  errors: number
  firstError?: string
  rate: number
  p50: number
  p99: number
  cpuUsPerSend: number
  /** the simulator child's and redis-server's CPU per send (they share the machine's cores) */
  simCpuUsPerSend: number
  redisCpuUsPerSend: number
}

/** CPU time in µs of the processes that serve the client: the simulator child and redis-server. */
interface ServerCpu { sim (): number, redis (): Promise<number> }

/** utime + stime of a process from /proc (Linux), in µs; NaN where there is no /proc. */
function processCpuUs (pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(fields[11]) + Number(fields[12])) * 10_000 // clock ticks of 10 ms (USER_HZ 100)
  } catch {
    return NaN
  }
}

async function redisCpuUs (client: Redis): Promise<number> {
  const info = await client.info('cpu')
  const read = (name: string): number => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1])
  return (read('used_cpu_sys') + read('used_cpu_user')) * 1e6
}

/** `concurrency` workers each send back to back until `seconds` have passed (closed loop). */
async function measure (send: SendFn, seconds: number, concurrency: number, servers: ServerCpu): Promise<RoundResult> {
  const latencies: number[] = []
  let errors = 0
  let firstError: string | undefined
  const simStart = servers.sim()
  const redisStart = await servers.redis()
  const cpuStart = process.cpuUsage()
  const start = performance.now()
  const end = start + seconds * 1000
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now()
      try {
        await send()
        latencies.push(performance.now() - t0)
      } catch (err) {
        errors++
        firstError ??= String((err as Error)?.message ?? err)
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const elapsed = (performance.now() - start) / 1000
  const cpu = process.cpuUsage(cpuStart)
  const simCpu = servers.sim() - simStart
  const redisCpu = await servers.redis() - redisStart
  const sorted = Float64Array.from(latencies).sort()
  return {
    sends: latencies.length,
    errors,
    firstError,
    rate: latencies.length / elapsed,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    cpuUsPerSend: latencies.length > 0 ? (cpu.user + cpu.system) / latencies.length : NaN,
    simCpuUsPerSend: simCpu / latencies.length,
    redisCpuUsPerSend: redisCpu / latencies.length
  }
}

async function pluginApp (sim: SimChild, redisUrl?: string): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  if (redisUrl) await app.register(fastifyRedis, { url: redisUrl, maxRetriesPerRequest: 1 })
  await app.register(wechatPush, {
    appId: sim.appId,
    appSecret: sim.appSecret,
    baseUrl: sim.url,
    store: redisUrl ? 'redis' : 'memory',
    keyPrefix: `bench:send:${process.pid}:`
  })
  await app.ready()
  return app
}

/** The request the plugin makes, by hand: same body (key order included), same query, JSON.parse'd answer. */
function rawSender (pool: Pool, token: string): SendFn {
  const path = `${SEND_PATH}?${new URLSearchParams({ access_token: token })}`
  return async () => {
    const m = shippedMessage()
    const data: Record<string, { value: string }> = {}
    for (const [key, value] of Object.entries(m.data)) data[key] = { value: String(value) }
    const body = JSON.stringify({ touser: m.toUser, template_id: m.templateId, data, page: m.page, miniprogram_state: 'formal', lang: 'zh_CN' })
    const response = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body })
    const answer = JSON.parse(await response.body.text()) as { errcode?: number, errmsg?: string }
    if (response.statusCode !== 200 || (answer.errcode ?? 0) !== 0) throw new Error(`HTTP ${response.statusCode} errcode ${answer.errcode} ${answer.errmsg}`)
  }
}

export interface SendBenchResult { table: string, ok: boolean }

export async function runSendBench (): Promise<SendBenchResult> {
  const seconds = envNumber('BENCH_SECONDS', 3)
  const rounds = envNumber('BENCH_ROUNDS', 5)
  const concurrency = envNumber('BENCH_CONCURRENCY', 64)
  const warmup = envNumber('BENCH_WARMUP_SECONDS', 2)
  const latencyMs = Number(process.env.BENCH_LATENCY_MS ?? 0)

  const apps: FastifyInstance[] = []
  let pool: Pool | undefined
  let sim: SimChild | undefined
  let redis: PrivateRedis | undefined
  let info: Redis | undefined
  try {
    sim = await SimChild.start()
    if (latencyMs > 0) await sim.setLatency(latencyMs)
    redis = await startRedis()
    const memoryApp = await pluginApp(sim)
    apps.push(memoryApp)
    const redisApp = await pluginApp(sim, redis.url)
    apps.push(redisApp)
    pool = new Pool(sim.url, { connections: 128 })
    info = new Redis(redis.url)
    const servers: ServerCpu = { sim: () => processCpuUs(sim?.pid), redis: () => redisCpuUs(info as Redis) }
    const token = await memoryApp.wechat.getToken()

    const variants: Variant[] = [
      { name: 'raw undici Pool', raw: true, send: rawSender(pool, token) },
      { name: 'wechat.send, memory store', raw: false, send: async () => { await memoryApp.wechat.send(shippedMessage()) } },
      { name: 'wechat.send, Redis store', raw: false, send: async () => { await redisApp.wechat.send(shippedMessage()) } }
    ]
    progress(`send: simulator in child process at ${sim.url}, redis ${redis.url}; ${concurrency} in flight, ${rounds} rounds x ${seconds}s, warm-up ${warmup}s each`)
    for (const variant of variants) {
      const result = await measure(variant.send, warmup, concurrency, servers)
      if (result.errors > 0) throw new Error(`warm-up of '${variant.name}' failed ${result.errors} times: ${result.firstError}`)
    }

    const results = new Map<string, RoundResult[]>(variants.map((v) => [v.name, []]))
    for (let round = 0; round < rounds; round++) {
      // Rotate the order each round so no variant always runs first (or right after another).
      const order = variants.map((_, i) => variants[(i + round) % variants.length])
      for (const variant of order) {
        const result = await measure(variant.send, seconds, concurrency, servers)
        results.get(variant.name)?.push(result)
        progress(`round ${round + 1}/${rounds} ${variant.name}: ${Math.round(result.rate)} sends/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, ${result.cpuUsPerSend.toFixed(0)} µs CPU/send (simulator ${result.simCpuUsPerSend.toFixed(0)}, redis-server ${result.redisCpuUsPerSend.toFixed(0)})${result.errors ? `, ${result.errors} errors (${result.firstError})` : ''}`)
      }
    }
    const stats = await sim.stats()
    progress(`simulator accepted ${stats.accepted} messages, ${stats.counters.stable_token} stable_token calls`)

    const raw = results.get(variants[0].name) as RoundResult[]
    let ok = true
    const rows = variants.map((variant) => {
      const runs = results.get(variant.name) as RoundResult[]
      const errors = runs.reduce((sum, r) => sum + r.errors, 0)
      const ratios = runs.map((r, i) => r.rate / raw[i].rate)
      const ratio = median(ratios)
      const pass = variant.raw || (ratio >= TARGET_RATIO && errors === 0)
      ok &&= pass
      return [
        variant.name,
        Math.round(median(runs.map((r) => r.rate))).toLocaleString('en-US'),
        median(runs.map((r) => r.p50)).toFixed(2),
        median(runs.map((r) => r.p99)).toFixed(2),
        median(runs.map((r) => r.cpuUsPerSend)).toFixed(0),
        median(runs.map((r) => r.simCpuUsPerSend)).toFixed(0),
        median(runs.map((r) => r.redisCpuUsPerSend)).toFixed(0),
        variant.raw ? '1.00' : `${ratio.toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
        variant.raw ? 'baseline' : `≥ ${TARGET_RATIO.toFixed(2)} × raw: ${pass ? 'ok' : 'MISSED'}`,
        String(errors)
      ]
    })
    const title = `wechat.send vs raw undici — ${concurrency} in flight, ${rounds} interleaved rounds × ${seconds} s, medians over rounds; ratio = median of per-round ratios (min–max)`
    const table = formatTable(['variant', 'median sends/s', 'p50 ms', 'p99 ms', 'client CPU µs/send', 'simulator CPU µs/send', 'redis-server CPU µs/send', 'ratio to raw', 'target', 'errors'], rows)
    return { table: `${title}\n\n${table}\n`, ok }
  } finally {
    for (const app of apps) await app.close()
    await pool?.close()
    info?.disconnect()
    await sim?.close()
    await redis?.stop()
  }
}

if (require.main === module) {
  runSendBench().then(({ table }) => { process.stdout.write(`\n${table}`) }, (err) => {
    console.error(err)
    process.exitCode = 1
  })
}
