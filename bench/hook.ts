/**
 * What `reply.wechatPush` costs an HTTP route: each route against its twin without the push, in the
 * same app process, side by side (routes in hook-routes.ts, app processes in hook-app.ts).
 *
 * Apps (each in its own child process; the simulator in another, sim-server.ts; redis-server private):
 * - memory: the in-process queue;
 * - bullmq: BullMQ on Redis, worked by the same process;
 * - bullmq-split: BullMQ, the app does not work the queue and a second process does (a fleet of web
 *   and worker instances; see hook-app.ts for how the worker is switched off).
 * Routes: trivial (`/plain` vs `/push`) and order (`/order` vs `/order-push`: JSON body validated,
 * priced, a 5 kB response serialised by schema; about 200 µs of CPU).
 * Modes:
 * - hook only: the simulator holds every answer for HOLD_MS, so the queue worker costs next to
 *   nothing while autocannon runs: what the response path pays (onSend, the batched queue add);
 * - end to end: the simulator answers at once, so the worker sends every push while requests are
 *   served (in the same process, except bullmq-split);
 * - fixed rate: BENCH_HOOK_RATE req/s spread evenly (paced.ts, open loop), end to end: what a push
 *   adds to the p99 of a route under ordinary load.
 * Rounds are interleaved, orders rotate, the queue is drained (not timed) after each push run, and
 * the table quotes medians over rounds. CPU µs/req is the app process's CPU time during the run over
 * the requests it answered (the worker's share too when it runs in the app); event-loop delay p99 is
 * from perf_hooks.monitorEventLoopDelay in the app.
 *
 *   flock /tmp/bench.lock npx tsx bench/hook.ts
 *   env: BENCH_SECONDS=3 BENCH_ROUNDS=5 BENCH_CONNECTIONS=32 BENCH_WARMUP_SECONDS=2 BENCH_HOOK_RATE=1000
 *        BENCH_HOOK_APPS=memory,bullmq,bullmq-split BENCH_HOOK_ROUTES=trivial,order BENCH_HOOK_MODES=hook,e2e,rate
 *        BENCH_HOOK_PROF_DIR=dir (a CPU profile of the app process during each measured run, plain and push)
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import { startRedis } from '../test/helpers/redis-server.js'
import type { PrivateRedis } from '../test/helpers/redis-server.js'
import { exited, forkTs, nextMessage } from './fork.js'
import type { Drained, Sample } from './hook-app.js'
import { orderBodyJson } from './hook-routes.js'
import { paced } from './paced.js'
import { SimChild } from './sim-child.js'
import { envNumber, formatTable, median, progress } from './stats.js'

/** /push must keep this share of /plain's throughput... */
export const TARGET_RATIO = 0.9
/** ...and add at most this to its p99 latency (ms). */
export const TARGET_P99_ADDED_MS = 2
/** Simulator latency in hook-only mode: the worker's sends wait, the backlog is sent after the run. */
const HOLD_MS = 3000

const APPS = { memory: 'memory queue', bullmq: 'BullMQ, worker in the app', 'bullmq-split': 'BullMQ, worker in another process' } as const
const ROUTES = {
  trivial: { label: 'trivial', plain: '/plain', push: '/push', method: 'GET' as const, body: undefined },
  order: { label: 'order (~200 µs)', plain: '/order', push: '/order-push', method: 'POST' as const, body: orderBodyJson() },
  // not the plugin: the least a durable push can cost (hook-routes.ts floorWriter); asked for by name only
  floor: { label: 'trivial, floor: no plugin, one Redis SET a push', plain: '/plain', push: '/floor', method: 'GET' as const, body: undefined }
}
const DEFAULT_ROUTES = 'trivial,order'
const MODES = { hook: 'hook only', e2e: 'end to end', rate: 'fixed rate' } as const
type AppKey = keyof typeof APPS
type RouteKey = keyof typeof ROUTES
type ModeKey = keyof typeof MODES

// autocannon ships no type declarations: the part of its API used here.
interface CannonResult { requests: { average: number, total: number }, latency: { p99: number }, non2xx: number, errors: number, timeouts: number }
type Autocannon = (options: { url: string, connections: number, duration: number, method?: string, body?: string, headers?: Record<string, string> }) => Promise<CannonResult>
const autocannon = createRequire(__filename)('autocannon') as Autocannon

function pick<K extends string> (env: string, all: Record<K, unknown>, defaults?: string): K[] {
  const raw = process.env[env] ?? defaults
  const keys = Object.keys(all) as K[]
  if (!raw) return keys
  const wanted = raw.split(',').map((s) => s.trim()) as K[]
  for (const k of wanted) if (!keys.includes(k)) throw new Error(`${env}: unknown '${k}' (one of ${keys.join(', ')})`)
  return wanted
}

interface AppHandle { key: AppKey, child: ChildProcess, worker?: ChildProcess, url: string }

const CHILD = path.join(__dirname, 'hook-app.ts')

async function startApp (key: AppKey, sim: SimChild, redis: PrivateRedis | undefined, index: number): Promise<AppHandle> {
  const env = {
    SIM_URL: sim.url,
    APP_ID: sim.appId,
    APP_SECRET: sim.appSecret,
    REDIS_URL: key === 'memory' ? '' : (redis as PrivateRedis).url,
    KEY_PREFIX: `bench:hook:${process.pid}:${index}:`
  }
  const child = forkTs(CHILD, { ...env, BENCH_HOOK_ROLE: 'app', BENCH_HOOK_WORKER: key === 'bullmq-split' ? 'off' : 'on', BENCH_HOOK_PROF_NAME: `hook-${key}` })
  const { port } = await nextMessage<{ port: number }>(child, 'ready')
  let worker: ChildProcess | undefined
  if (key === 'bullmq-split') {
    worker = forkTs(CHILD, { ...env, BENCH_HOOK_ROLE: 'worker' })
    await nextMessage(worker, 'ready')
  }
  return { key, child, worker, url: `http://127.0.0.1:${port}` }
}

async function ask<T> (child: ChildProcess, type: string, timeoutMs = 60_000, extra: object = {}): Promise<T> {
  const answer = nextMessage<T & { error?: string }>(child, type, timeoutMs)
  child.send({ ...extra, type })
  const result = await answer
  if (result.error) throw new Error(result.error)
  return result
}

interface Run { rate: number, p99: number, bad: number, cpu: number, machineCpu: number, eldP99: number }

/**
 * CPU time the whole machine spent busy (every process and the kernel: autocannon, the app, redis-server,
 * the simulator), in µs, from /proc/stat's first line (USER_HZ ticks of 10 ms). Over a run it says what
 * one request costs the machine, so the throughput two cores can reach; undefined off Linux.
 */
function machineBusyMicros (): number | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]?.trim().split(/\s+/).slice(1).map(Number) ?? []
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields
    return (user + nice + system + irq + softirq + steal) * 10_000
  } catch {
    return undefined
  }
}

async function measure (app: AppHandle, route: RouteKey, mode: ModeKey, which: 'plain' | 'push', seconds: number, connections: number, fixedRate: number, warmup = false): Promise<Run> {
  const r = ROUTES[route]
  const urlPath = which === 'plain' ? r.plain : r.push
  const profile = process.env.BENCH_HOOK_PROF_DIR && !warmup
  if (profile) await ask(app.child, 'profile-start', 60_000, { name: `${route}-${mode}-${which}` })
  await ask<Sample>(app.child, 'sample')
  const busyBefore = machineBusyMicros()
  let rate: number
  let p99: number
  let bad: number
  let total: number
  if (mode === 'rate') {
    const run = await paced({ url: app.url, path: urlPath, method: r.method, body: r.body, rate: fixedRate, seconds })
    ;({ rate, p99, bad, total } = run)
  } else {
    const run = await autocannon({ url: `${app.url}${urlPath}`, connections, duration: seconds, method: r.method, ...(r.body ? { body: r.body, headers: { 'content-type': 'application/json' } } : {}) })
    rate = run.requests.average
    p99 = run.latency.p99
    bad = run.non2xx + run.errors + run.timeouts
    total = run.requests.total
  }
  const busyAfter = machineBusyMicros()
  const sample = await ask<Sample>(app.child, 'sample')
  if (profile) progress(`profile of ${app.key} ${route} ${MODES[mode]}: ${(await ask<{ file: string }>(app.child, 'profile-stop')).file}`)
  const machineCpu = busyBefore === undefined || busyAfter === undefined ? NaN : (busyAfter - busyBefore) / Math.max(1, total)
  return { rate, p99, bad, cpu: sample.cpuMicros / Math.max(1, total), machineCpu, eldP99: sample.eldP99 }
}

export interface HookBenchResult { table: string, ok: boolean }

export async function runHookBench (): Promise<HookBenchResult> {
  const seconds = envNumber('BENCH_SECONDS', 3)
  const rounds = envNumber('BENCH_ROUNDS', 5)
  const connections = envNumber('BENCH_CONNECTIONS', 32)
  const warmup = envNumber('BENCH_WARMUP_SECONDS', 2)
  const fixedRate = envNumber('BENCH_HOOK_RATE', 1000)
  const appKeys = pick<AppKey>('BENCH_HOOK_APPS', APPS)
  const routeKeys = pick<RouteKey>('BENCH_HOOK_ROUTES', ROUTES, DEFAULT_ROUTES)
  const modeKeys = pick<ModeKey>('BENCH_HOOK_MODES', MODES)

  let sim: SimChild | undefined
  let redis: PrivateRedis | undefined
  const apps: AppHandle[] = []
  try {
    sim = await SimChild.start()
    if (appKeys.some((k) => k !== 'memory')) redis = await startRedis()
    for (const [i, key] of appKeys.entries()) apps.push(await startApp(key, sim, redis, i))
    progress(`hook: simulator ${sim.url}${redis ? `, redis ${redis.url}` : ''}; autocannon ${connections} connections; ${rounds} rounds × ${seconds} s per route; warm-up ${warmup} s`)
    for (const app of apps) {
      for (const route of routeKeys) {
        for (const which of ['plain', 'push'] as const) await measure(app, route, 'e2e', which, warmup, connections, fixedRate, true)
      }
      await ask<Drained>(app.child, 'drain', 300_000)
    }

    const key = (app: AppKey, route: RouteKey, mode: ModeKey): string => `${app}|${route}|${mode}`
    const runs = new Map<string, { plain: Run[], push: Run[] }>()
    for (const a of appKeys) for (const r of routeKeys) for (const m of modeKeys) runs.set(key(a, r, m), { plain: [], push: [] })
    for (let round = 0; round < rounds; round++) {
      const forward = round % 2 === 0
      for (const app of apps.map((_, i) => apps[(i + round) % apps.length] as AppHandle)) {
        for (const route of forward ? routeKeys : [...routeKeys].reverse()) {
          for (const mode of forward ? modeKeys : [...modeKeys].reverse()) {
            for (const which of forward ? ['plain', 'push'] as const : ['push', 'plain'] as const) {
              await sim.setLatency(mode === 'hook' ? HOLD_MS : 0)
              const run = await measure(app, route, mode, which, seconds, connections, fixedRate)
              runs.get(key(app.key, route, mode))?.[which].push(run)
              let drained = ''
              if (which === 'push') {
                await sim.setLatency(0)
                const started = Date.now()
                const totals = await ask<Drained>(app.child, 'drain', 300_000)
                drained = `; drained in ${Date.now() - started} ms (${totals.sent} sent so far)`
              }
              progress(`round ${round + 1}/${rounds} ${app.key} ${route} ${MODES[mode]} ${which}: ${Math.round(run.rate)} req/s, p99 ${run.p99} ms, ${Math.round(run.cpu)} µs/req, ELD p99 ${run.eldP99.toFixed(1)} ms${drained}`)
            }
          }
        }
      }
    }
    await sim.setLatency(0)

    let ok = true
    const rows: string[][] = []
    for (const app of apps) {
      const totals = await ask<Drained>(app.child, 'drain', 300_000)
      for (const route of routeKeys) {
        for (const mode of modeKeys) {
          const { plain, push } = runs.get(key(app.key, route, mode)) as { plain: Run[], push: Run[] }
          const ratios = push.map((r, i) => r.rate / (plain[i] as Run).rate)
          const added = push.map((r, i) => r.p99 - (plain[i] as Run).p99)
          const bad = [...plain, ...push].reduce((sum, r) => sum + r.bad, 0)
          const ratio = median(ratios)
          const p99Added = median(added)
          const ratioOk = ratio >= TARGET_RATIO
          const p99Ok = p99Added <= TARGET_P99_ADDED_MS
          ok &&= ratioOk && p99Ok && bad === 0 && totals.failed === 0
          const cpuPlain = median(plain.map((r) => r.cpu))
          const cpuPush = median(push.map((r) => r.cpu))
          const machinePlain = median(plain.map((r) => r.machineCpu))
          const machinePush = median(push.map((r) => r.machineCpu))
          rows.push([
            APPS[app.key],
            ROUTES[route].label,
            mode === 'rate' ? `${fixedRate} req/s, end to end` : MODES[mode],
            Math.round(median(plain.map((r) => r.rate))).toLocaleString('en-US'),
            Math.round(median(push.map((r) => r.rate))).toLocaleString('en-US'),
            `${ratio.toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) ${ratioOk ? 'ok' : 'MISSED'}`,
            `${median(plain.map((r) => r.p99))} / ${median(push.map((r) => r.p99))}`,
            `${p99Added >= 0 ? '+' : ''}${p99Added.toFixed(1)} (${Math.min(...added).toFixed(1)}–${Math.max(...added).toFixed(1)}) ${p99Ok ? 'ok' : 'MISSED'}`,
            `${Math.round(cpuPlain)} / ${Math.round(cpuPush)} (+${Math.round(cpuPush - cpuPlain)})`,
            Number.isNaN(machinePlain) ? 'n/a' : `${Math.round(machinePlain)} / ${Math.round(machinePush)} (+${Math.round(machinePush - machinePlain)})`,
            `${median(plain.map((r) => r.eldP99)).toFixed(1)} / ${median(push.map((r) => r.eldP99)).toFixed(1)}`,
            String(bad)
          ])
        }
      }
      progress(`${app.key}: ${totals.sent.toLocaleString('en-US')} sent of ${totals.total.toLocaleString('en-US')} recorded${totals.failed ? `, ${totals.failed} failed` : ''}`)
    }
    const stats = await sim.stats()
    progress(`simulator accepted ${stats.accepted} messages`)
    const title = `reply.wechatPush vs the same route without it: ${rounds} interleaved rounds × ${seconds} s per route, medians over rounds; ratio and p99 added are medians of per-round pairs (min–max). ` +
      `Saturation modes: autocannon, ${connections} connections. Hook only: the simulator holds answers ${HOLD_MS} ms during the run (the worker idles; the backlog is sent afterwards). End to end: the worker sends every push during the run. ` +
      `Fixed rate: ${fixedRate} req/s spread evenly (open loop), end to end. Targets: throughput ratio ≥ ${TARGET_RATIO}, p99 added ≤ ${TARGET_P99_ADDED_MS} ms.`
    const table = formatTable(['queue', 'route', 'mode', 'plain req/s', 'push req/s', 'throughput ratio', 'p99 ms plain / push', 'p99 added ms', 'app CPU µs/req plain / push', 'machine CPU µs/req plain / push', 'event-loop delay p99 ms', 'errors'], rows)
    return { table: `${title}\n\n${table}\n`, ok }
  } finally {
    for (const app of apps) {
      for (const child of [app.child, app.worker]) {
        if (child?.connected) child.send({ type: 'close' })
      }
      await exited(app.child)
      if (app.worker) await exited(app.worker)
    }
    await sim?.close()
    await redis?.stop()
  }
}

if (require.main === module) {
  runHookBench().then(({ table }) => { process.stdout.write(`\n${table}`) }, (err) => {
    console.error(err)
    process.exitCode = 1
  })
}
