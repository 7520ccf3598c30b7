/**
 * The same workload through `co-wechat-api` (the common Node WeChat SDK) and through this plugin:
 * 4 processes on a cold cache, each sending BENCH_COMPARE_SENDS subscribe messages with
 * BENCH_COMPARE_CONCURRENCY in flight, to one WeChat simulator running in its own process.
 *
 *   npx tsx bench/compare.ts          (about 1 minute; the table goes to stdout, progress to stderr)
 *
 * Variants, each run BENCH_COMPARE_ROUNDS times, interleaved, every round with fresh processes:
 *  - co-wechat-api 3.11, `new API(appid, secret)` with its default token store (process memory),
 *    `api.prefix` pointed at the simulator's `/cgi-bin/`, `sendSubscribeMessage()`. Its only token
 *    endpoint is the classic `cgi-bin/token`.
 *  - fastify-wechat-push, classic token (`tokenEndpoint: 'classic'`), Redis store shared by the 4.
 *  - fastify-wechat-push, stable token (the default), Redis store shared by the 4.
 *  - fastify-wechat-push, classic token, memory store (no Redis: each process on its own).
 *
 * Measured: throughput (all sends of the 4 processes ÷ wall time from 'go' to the last one done),
 * p50/p99 latency per send (over every send of the round), token endpoint calls and new tokens the
 * simulator issued for the round, and failed sends. Medians over rounds.
 *
 * This file is also the worker (COMPARE_ROLE=worker): the parent forks it 4 times per round.
 */
import type { ChildProcess } from 'node:child_process'
import Fastify from 'fastify'
import fastifyRedis from '@fastify/redis'
import { wechatPush, testing } from './built.js'
import { startRedis } from '../test/helpers/redis-server.js'
import { exited, forkTs, nextMessage } from './fork.js'
import { SimChild } from './sim-child.js'
import { envNumber, formatTable, median, percentile, progress } from './stats.js'

const { DEMO_TEMPLATE_IDS } = testing

type Variant = 'co-wechat-api' | 'plugin-classic-redis' | 'plugin-stable-redis' | 'plugin-classic-memory'

const LABELS: Record<Variant, string> = {
  'co-wechat-api': 'co-wechat-api 3.11 (classic token, per-process memory)',
  'plugin-classic-redis': 'fastify-wechat-push, classic token, Redis store',
  'plugin-stable-redis': 'fastify-wechat-push, stable token, Redis store',
  'plugin-classic-memory': 'fastify-wechat-push, classic token, memory store'
}

const PROCESSES = 4

interface WorkerResult { sent: number, failed: number, errors: string[], durationMs: number, latencies: number[] }

interface Sender { send (i: number): Promise<void>, close (): Promise<void> }

function messageData (i: number): Record<string, string> {
  return { character_string1: `SO${process.pid}${String(i).padStart(6, '0')}`, thing2: 'Blue ceramic mug x2', amount3: '¥58.00', time4: '2026-03-01 14:05', phrase5: '已发货' }
}

async function buildSender (variant: Variant): Promise<Sender> {
  const simUrl = process.env.SIM_URL as string
  const appId = process.env.APP_ID as string
  const appSecret = process.env.APP_SECRET as string
  if (variant === 'co-wechat-api') {
    const API = require('co-wechat-api') as new (appid: string, secret: string) => { prefix: string, sendSubscribeMessage (openid: string, templateId: string, page: string, data: Record<string, { value: string }>): Promise<unknown> }
    const api = new API(appId, appSecret)
    api.prefix = `${simUrl}/cgi-bin/` // its API base (there is no setter: every call builds its URL from this.prefix)
    return {
      send: async (i) => {
        const data = Object.fromEntries(Object.entries(messageData(i)).map(([k, v]) => [k, { value: v }]))
        await api.sendSubscribeMessage(`oCmp-${process.pid}-${i}`, DEMO_TEMPLATE_IDS.orderShipped, `pages/order?id=${i}`, data)
      },
      close: async () => {}
    }
  }
  const app = Fastify()
  if (variant !== 'plugin-classic-memory') await app.register(fastifyRedis, { url: process.env.REDIS_URL as string })
  await app.register(wechatPush, {
    appId,
    appSecret,
    baseUrl: simUrl,
    keyPrefix: process.env.KEY_PREFIX as string,
    tokenEndpoint: variant === 'plugin-stable-redis' ? 'stable' : 'classic',
    queue: false
  })
  await app.ready()
  return {
    send: async (i) => {
      await app.wechat.send({ toUser: `oCmp-${process.pid}-${i}`, templateId: DEMO_TEMPLATE_IDS.orderShipped, page: `pages/order?id=${i}`, data: messageData(i) })
    },
    close: () => app.close()
  }
}

async function worker (): Promise<void> {
  const variant = process.env.VARIANT as Variant
  const count = Number(process.env.SENDS)
  const concurrency = Number(process.env.CONCURRENCY)
  const sender = await buildSender(variant)
  process.send?.({ type: 'ready' })
  await new Promise<void>((resolve) => process.once('message', () => resolve()))
  const latencies: number[] = []
  const errors: string[] = []
  let failed = 0
  let next = 0
  const start = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let i = next++; i < count; i = next++) {
      const t0 = performance.now()
      try {
        await sender.send(i)
        latencies.push(performance.now() - t0)
      } catch (err) {
        failed++
        if (errors.length < 3) errors.push(String((err as Error).message).slice(0, 160))
      }
    }
  }))
  const result: WorkerResult = { sent: count - failed, failed, errors, durationMs: performance.now() - start, latencies }
  process.send?.({ type: 'done', ...result })
  await sender.close()
  process.disconnect()
}

interface RoundResult { throughput: number, p50: number, p99: number, tokenCalls: number, newTokens: number, failed: number, errors: string[] }

async function round (variant: Variant, sim: SimChild, redisUrl: string, tag: string, sends: number, concurrency: number): Promise<RoundResult> {
  const before = await sim.stats()
  const env = { COMPARE_ROLE: 'worker', VARIANT: variant, SIM_URL: sim.url, APP_ID: sim.appId, APP_SECRET: sim.appSecret, REDIS_URL: redisUrl, KEY_PREFIX: `cmp:${tag}:`, SENDS: String(sends), CONCURRENCY: String(concurrency) }
  const children: ChildProcess[] = []
  try {
    for (let i = 0; i < PROCESSES; i++) children.push(forkTs(__filename, env))
    await Promise.all(children.map((child) => nextMessage(child, 'ready', 60_000)))
    const done = children.map((child) => nextMessage<WorkerResult>(child, 'done', 300_000))
    const go = performance.now()
    for (const child of children) child.send({ type: 'go' })
    const results = await Promise.all(done)
    const wall = performance.now() - go
    await Promise.all(children.map((child) => exited(child, 20_000)))
    const after = await sim.stats()
    const latencies = Float64Array.from(results.flatMap((r) => r.latencies)).sort()
    const sent = results.reduce((sum, r) => sum + r.sent, 0)
    const fetched = (s: typeof before): number => s.tokenFetches.token + s.tokenFetches.stable_token + s.tokenFetches.force_refresh
    return {
      throughput: sent / (wall / 1000),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      tokenCalls: (after.counters.token + after.counters.stable_token) - (before.counters.token + before.counters.stable_token),
      newTokens: fetched(after) - fetched(before),
      failed: results.reduce((sum, r) => sum + r.failed, 0),
      errors: results.flatMap((r) => r.errors).slice(0, 3)
    }
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
}

export async function runCompareBench (): Promise<string> {
  const sends = envNumber('BENCH_COMPARE_SENDS', 2000)
  const concurrency = envNumber('BENCH_COMPARE_CONCURRENCY', 32)
  const rounds = envNumber('BENCH_COMPARE_ROUNDS', 3)
  const variants = Object.keys(LABELS) as Variant[]
  const sim = await SimChild.start()
  const redis = await startRedis()
  const results = new Map<Variant, RoundResult[]>(variants.map((v) => [v, []]))
  try {
    for (let r = 0; r < rounds; r++) {
      // Interleaved, the order rotating each round, so a slow phase of the machine hits every variant.
      const order = variants.map((_, i) => variants[(i + r) % variants.length])
      for (const variant of order) {
        const result = await round(variant, sim, redis.url, `${r}-${variant}-${Date.now()}`, sends, concurrency)
        results.get(variant)?.push(result)
        progress(`round ${r + 1}/${rounds} ${variant}: ${Math.round(result.throughput)} sends/s, p99 ${result.p99.toFixed(1)} ms, token calls ${result.tokenCalls}, failed ${result.failed}${result.errors.length ? ` (${result.errors[0]})` : ''}`)
      }
    }
  } finally {
    await redis.cleanup()
    await sim.close()
  }
  const rows = variants.map((variant) => {
    const list = results.get(variant) ?? []
    const m = (pick: (r: RoundResult) => number): number => median(list.map(pick))
    return [
      LABELS[variant],
      Math.round(m((r) => r.throughput)).toLocaleString('en-US'),
      m((r) => r.p50).toFixed(1),
      m((r) => r.p99).toFixed(1),
      list.map((r) => r.tokenCalls).join(', '),
      list.map((r) => r.newTokens).join(', '),
      list.map((r) => r.failed).join(', ')
    ]
  })
  const header = `${PROCESSES} processes × ${sends} sends, ${concurrency} in flight each, cold cache; medians of ${rounds} interleaved rounds (token columns: per round)`
  return `${header}\n\n${formatTable(['variant', 'sends/s', 'p50 ms', 'p99 ms', 'token endpoint calls', 'new tokens issued', 'failed sends'], rows)}\n`
}

if (process.env.COMPARE_ROLE === 'worker') {
  worker().catch((err) => {
    console.error(err)
    process.exitCode = 1
    if (process.connected) process.disconnect()
  })
} else if (require.main === module) {
  runCompareBench().then((table) => { process.stdout.write(`\n${table}`) }, (err) => {
    console.error(err)
    process.exitCode = 1
  })
}
