/**
 * What `reply.wechatPush` costs an HTTP route: autocannon (programmatic API) against two routes of
 * the same app process, `/push` (builds a message and calls reply.wechatPush) and `/plain` (builds
 * the same message, no push), with the in-process queue and with BullMQ on a private redis-server.
 * Two modes each:
 * - hook only: the simulator holds every answer for HOLD_MS, so the queue worker (8 in flight) costs
 *   next to nothing while autocannon runs: what the response path pays (onSend, record, queue add);
 * - end to end: the simulator answers at once, so the same process also sends every push while it
 *   serves requests: the full cost of one push per request at saturation;
 * - end to end at a fixed rate (BENCH_HOOK_RATE req/s, below saturation): what a push adds to the
 *   p99 of a route under ordinary load, the worker sending as it goes.
 *
 * Processes: this one runs autocannon; each variant's app runs in its own child (this file again,
 * BENCH_HOOK_ROLE=app); the simulator runs in another (sim-server.ts). Rounds are interleaved, the
 * order rotates each round, the queue is drained (not timed) after each /push run so the next run
 * starts from an idle app, and the table quotes medians over rounds.
 *
 *   npx tsx bench/hook.ts     BENCH_SECONDS=3 BENCH_ROUNDS=5 BENCH_CONNECTIONS=32 BENCH_WARMUP_SECONDS=2 BENCH_HOOK_RATE=1000
 */
import type { ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import Fastify from 'fastify'
import fastifyRedis from '@fastify/redis'
import wechatPush from '../lib/index.js'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import type { SubscribeMessage } from '../lib/public-types.js'
import { startRedis } from '../test/helpers/redis-server.js'
import type { PrivateRedis } from '../test/helpers/redis-server.js'
import { exited, forkTs, nextMessage } from './fork.js'
import { SimChild } from './sim-child.js'
import { envNumber, formatTable, median, progress } from './stats.js'

/** /push must keep this share of /plain's throughput... */
export const TARGET_RATIO = 0.9
/** ...and add at most this to its p99 latency (ms). */
export const TARGET_P99_ADDED_MS = 2
/** Simulator latency in hook-only mode: the worker's sends wait, the backlog is sent after the run. */
const HOLD_MS = 3000
/** Few connections at the fixed rate: autocannon releases each second's quota at once, so many
 * connections would measure the burst's queueing rather than the response time. */
const RATE_CONNECTIONS = 4

type Mode = 'hook only' | 'end to end' | 'fixed rate'
const MODES: Mode[] = ['hook only', 'end to end', 'fixed rate']

// autocannon ships no type declarations: the part of its API used here.
interface CannonResult {
  requests: { average: number, total: number }
  latency: { p50: number, p99: number }
  non2xx: number
  errors: number
  timeouts: number
}
type Autocannon = (options: { url: string, connections: number, duration: number, overallRate?: number }) => Promise<CannonResult>
const autocannon = createRequire(__filename)('autocannon') as Autocannon

// ---------------------------------------------------------------- app child (BENCH_HOOK_ROLE=app)

let serial = 0
function message (): SubscribeMessage {
  serial++
  return {
    toUser: `oBench-hook-${process.pid}-${serial}`,
    templateId: DEMO_TEMPLATE_IDS.orderShipped,
    page: `pages/order?id=${serial}`,
    data: { character_string1: `SO${serial}`, thing2: 'Blue ceramic mug x2', amount3: '¥58.00', time4: '2026-03-01 14:05', phrase5: '已发货' }
  }
}

async function appChild (): Promise<void> {
  const redisUrl = process.env.REDIS_URL
  const app = Fastify({ logger: false })
  if (redisUrl) await app.register(fastifyRedis, { url: redisUrl, maxRetriesPerRequest: 1 })
  await app.register(wechatPush, {
    appId: process.env.APP_ID as string,
    appSecret: process.env.APP_SECRET as string,
    baseUrl: process.env.SIM_URL as string,
    keyPrefix: `bench:hook:${process.pid}:`
  })
  app.get('/plain', async () => {
    const m = message()
    return { ok: true, order: m.data.character_string1 }
  })
  app.get('/push', async (_request, reply) => {
    const m = message()
    reply.wechatPush(m)
    return { ok: true, order: m.data.character_string1 }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  await app.wechat.getToken()
  const address = app.server.address()
  process.on('message', (command: { type: string }) => {
    if (command.type === 'drain') {
      drain().then((stats) => process.send?.({ type: 'drained', ...stats }), (err) => process.send?.({ type: 'drained', error: String(err) }))
    } else if (command.type === 'close') {
      app.close().then(() => process.disconnect(), () => process.exit(1))
    }
  })
  process.send?.({ type: 'ready', port: typeof address === 'object' && address ? address.port : 0 })

  /** Waits until every queued push has left the queue; answers the running totals. */
  async function drain (): Promise<{ total: number, sent: number, failed: number }> {
    for (;;) {
      const stats = await app.wechat.stats()
      if (stats.pending + stats.sending === 0) return { total: stats.total, sent: stats.sent, failed: stats.failed + stats.unknown }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

// ---------------------------------------------------------------- bench (parent)

interface AppHandle { name: string, child: ChildProcess, url: string }

async function startApp (name: string, sim: SimChild, redisUrl?: string): Promise<AppHandle> {
  const child = forkTs(__filename, {
    BENCH_HOOK_ROLE: 'app',
    SIM_URL: sim.url,
    APP_ID: sim.appId,
    APP_SECRET: sim.appSecret,
    REDIS_URL: redisUrl ?? ''
  })
  const { port } = await nextMessage<{ port: number }>(child, 'ready')
  return { name, child, url: `http://127.0.0.1:${port}` }
}

async function drain (app: AppHandle): Promise<{ total: number, sent: number, failed: number }> {
  const answer = nextMessage<{ total: number, sent: number, failed: number, error?: string }>(app.child, 'drained', 300_000)
  app.child.send({ type: 'drain' })
  const result = await answer
  if (result.error) throw new Error(result.error)
  return result
}

interface Run { rate: number, p50: number, p99: number, bad: number }

async function cannon (url: string, seconds: number, connections: number, overallRate?: number): Promise<Run> {
  const result = await autocannon({ url, connections, duration: seconds, ...(overallRate ? { overallRate } : {}) })
  return { rate: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, bad: result.non2xx + result.errors + result.timeouts }
}

export interface HookBenchResult { table: string, ok: boolean }

export async function runHookBench (): Promise<HookBenchResult> {
  const seconds = envNumber('BENCH_SECONDS', 3)
  const rounds = envNumber('BENCH_ROUNDS', 5)
  const connections = envNumber('BENCH_CONNECTIONS', 32)
  const warmup = envNumber('BENCH_WARMUP_SECONDS', 2)
  const fixedRate = envNumber('BENCH_HOOK_RATE', 1000)

  let sim: SimChild | undefined
  let redis: PrivateRedis | undefined
  const apps: AppHandle[] = []
  try {
    sim = await SimChild.start()
    redis = await startRedis()
    apps.push(await startApp('in-process queue (memory)', sim))
    apps.push(await startApp('BullMQ queue (Redis)', sim, redis.url))
    progress(`hook: simulator ${sim.url}, redis ${redis.url}; autocannon ${connections} connections, ${rounds} rounds × ${seconds} s per route, warm-up ${warmup} s`)
    for (const app of apps) {
      await cannon(`${app.url}/plain`, warmup, connections)
      await cannon(`${app.url}/push`, warmup, connections)
      await drain(app)
    }

    const key = (app: AppHandle, mode: Mode): string => `${app.name}|${mode}`
    const runs = new Map<string, { plain: Run[], push: Run[] }>(apps.flatMap((a) => MODES.map((m) => [key(a, m), { plain: [], push: [] }])))
    let pushed = 0
    for (let round = 0; round < rounds; round++) {
      const appOrder = apps.map((_, i) => apps[(i + round) % apps.length] as AppHandle)
      for (const app of appOrder) {
        for (const mode of round % 2 === 0 ? MODES : [...MODES].reverse()) {
          const routes = round % 2 === 0 ? ['plain', 'push'] as const : ['push', 'plain'] as const
          for (const route of routes) {
            await sim.setLatency(mode === 'hook only' ? HOLD_MS : 0)
            const run = mode === 'fixed rate'
              ? await cannon(`${app.url}/${route}`, seconds, RATE_CONNECTIONS, fixedRate)
              : await cannon(`${app.url}/${route}`, seconds, connections)
            runs.get(key(app, mode))?.[route].push(run)
            if (route === 'push') {
              pushed += Math.round(run.rate * seconds)
              await sim.setLatency(0)
              const started = Date.now()
              const totals = await drain(app)
              progress(`round ${round + 1}/${rounds} ${app.name}, ${mode}, /push: ${Math.round(run.rate)} req/s, p99 ${run.p99} ms; queue drained in ${Date.now() - started} ms (${totals.sent} sent so far)`)
            } else {
              progress(`round ${round + 1}/${rounds} ${app.name}, ${mode}, /plain: ${Math.round(run.rate)} req/s, p99 ${run.p99} ms`)
            }
          }
        }
      }
    }
    await sim.setLatency(0)

    let ok = true
    const rows: string[][] = []
    for (const app of apps) {
      const totals = await drain(app)
      for (const mode of MODES) {
        const { plain, push } = runs.get(key(app, mode)) as { plain: Run[], push: Run[] }
        const ratios = push.map((r, i) => r.rate / (plain[i] as Run).rate)
        const added = push.map((r, i) => r.p99 - (plain[i] as Run).p99)
        const bad = [...plain, ...push].reduce((sum, r) => sum + r.bad, 0)
        const ratio = median(ratios)
        const p99Added = median(added)
        const pass = ratio >= TARGET_RATIO && p99Added <= TARGET_P99_ADDED_MS && bad === 0 && totals.failed === 0
        ok &&= pass
        rows.push([
          `${app.name}, ${mode === 'fixed rate' ? `end to end at ${fixedRate} req/s` : mode}`,
          Math.round(median(plain.map((r) => r.rate))).toLocaleString('en-US'),
          Math.round(median(push.map((r) => r.rate))).toLocaleString('en-US'),
          `${ratio.toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
          `≥ ${TARGET_RATIO}: ${ratio >= TARGET_RATIO ? 'ok' : 'MISSED'}`,
          String(median(plain.map((r) => r.p99))),
          String(median(push.map((r) => r.p99))),
          `${p99Added >= 0 ? '+' : ''}${p99Added.toFixed(1)} (${Math.min(...added)}–${Math.max(...added)})`,
          `≤ ${TARGET_P99_ADDED_MS} ms: ${p99Added <= TARGET_P99_ADDED_MS ? 'ok' : 'MISSED'}`,
          mode === 'hook only' ? `${totals.sent.toLocaleString('en-US')} / ${totals.total.toLocaleString('en-US')}${totals.failed ? `, ${totals.failed} failed` : ''}` : '〃',
          String(bad)
        ])
      }
    }
    const stats = await sim.stats()
    progress(`simulator accepted ${stats.accepted} messages (about ${pushed} pushed in measured rounds, plus warm-up)`)
    const title = `reply.wechatPush vs the same route without it — autocannon ${connections} connections, ${rounds} interleaved rounds × ${seconds} s per route, medians over rounds; ratio and p99 added are medians of per-round pairs (min–max). ` +
      `Hook only: the simulator holds answers ${HOLD_MS} ms during the run (the worker idles; the backlog is sent afterwards). End to end: the same process also sends every push. ` +
      `At ${fixedRate} req/s (${RATE_CONNECTIONS} connections): offered load below saturation, so the ratio is achieved/achieved and p99 added is what a push costs a response under ordinary load.`
    const table = formatTable(['queue, mode', '/plain req/s', '/push req/s', 'throughput ratio', 'target', '/plain p99 ms', '/push p99 ms', 'p99 added ms', 'target', 'pushes sent / recorded', 'errors + non-2xx'], rows)
    return { table: `${title}\n\n${table}\n`, ok }
  } finally {
    for (const app of apps) {
      if (app.child.connected) app.child.send({ type: 'close' })
      await exited(app.child)
    }
    await sim?.close()
    await redis?.stop()
  }
}

if (process.env.BENCH_HOOK_ROLE === 'app') {
  appChild().catch((err) => {
    console.error(err)
    process.exit(1)
  })
} else if (require.main === module) {
  runHookBench().then(({ table }) => { process.stdout.write(`\n${table}`) }, (err) => {
    console.error(err)
    process.exitCode = 1
  })
}
