/**
 * Token sharing, counted rather than timed:
 *  (a) Redis commands per warm send with the Redis store — INFO commandstats diffed per command around
 *      N sends (`info` itself excluded; counts commands run inside Lua scripts too), plus the commands
 *      the app's client actually sent (round trips, from MONITOR) and how many of those touch the
 *      token keys — target 0 on the token path: a valid token is served from process memory (the
 *      other commands are the message records' writes, at most one round trip a send);
 *  (b) token endpoint calls for a cold 4-process fleet on one private Redis, 250 concurrent sends
 *      each (test/fixtures/fleet-worker.ts) — target 1 `stable_token` call for the whole fleet.
 *
 *   npx tsx bench/token.ts        BENCH_TOKEN_SENDS=2000 BENCH_FLEET_RUNS=3
 */
import path from 'node:path'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import fastifyRedis from '@fastify/redis'
import { Redis } from 'ioredis'
import { wechatPush, testing } from './built.js'
import type { WechatSimulator } from '../lib/testing/index.js'
import { shippedMessage } from '../test/helpers/app.js'
import { startRedis } from '../test/helpers/redis-server.js'
import type { PrivateRedis } from '../test/helpers/redis-server.js'
import { exited, forkTs, nextMessage } from './fork.js'
import { envNumber, formatTable, progress } from './stats.js'

const { createSimulator } = testing

const FLEET_WORKER = path.join(__dirname, '..', 'test', 'fixtures', 'fleet-worker.ts')
const FLEET_SIZE = 4
const SENDS_PER_WORKER = 250
const CONCURRENCY = 64

/** `INFO commandstats` as calls per command name. */
async function commandCalls (client: Redis): Promise<Map<string, number>> {
  const text = await client.info('commandstats')
  const calls = new Map<string, number>()
  for (const match of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(match[1], Number(match[2]))
  return calls
}

async function sendMany (app: FastifyInstance, count: number): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, async () => {
    while (next++ < count) await app.wechat.send(shippedMessage())
  }))
}

interface CommandsResult {
  sends: number
  /** every command Redis executed, commands run inside Lua scripts included (INFO commandstats) */
  executed: number
  executedByName: string
  /** commands the app's client sent (MONITOR, source not 'lua'): network round trips */
  issued: number
  issuedByName: string
  /** issued commands naming a token key (`...token`, `...token:lock`, `...token:force`) */
  tokenIssued: number
}

function describeCounts (counts: Map<string, number>): string {
  return [...counts].sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name}=${n}`).join(' ') || 'none'
}

async function redisCommandsPerSend (redis: PrivateRedis, sends: number): Promise<CommandsResult> {
  let sim: WechatSimulator | undefined
  let app: FastifyInstance | undefined
  let observer: Redis | undefined
  let monitor: Redis | undefined
  try {
    sim = await createSimulator()
    app = Fastify({ logger: false })
    await app.register(fastifyRedis, { url: redis.url, maxRetriesPerRequest: 1 })
    await app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, store: 'redis', keyPrefix: `bench:token:${process.pid}:` })
    await app.ready()
    await sendMany(app, 200) // warm-up: token fetched and stored, connections open
    // Separate connections only observe; their own INFO and ECHO are excluded from the counts.
    observer = new Redis(redis.url, { maxRetriesPerRequest: 1 })
    monitor = await observer.monitor() // a duplicate connection in monitor mode
    const issued = new Map<string, number>()
    let tokenIssued = 0
    const marker = `bench-end-${process.pid}`
    let markerSeen: () => void = () => {}
    const flushed = new Promise<void>((resolve) => { markerSeen = resolve })
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      const name = String(args[0]).toLowerCase()
      if (name === 'echo' && args[1] === marker) { markerSeen(); return }
      if (source === 'lua' || name === 'info' || name === 'echo') return
      issued.set(name, (issued.get(name) ?? 0) + 1)
      if (args.some((arg) => /}:token(:lock|:force)?$/.test(String(arg)))) tokenIssued++
    })
    const before = await commandCalls(observer)
    await sendMany(app, sends)
    const after = await commandCalls(observer)
    await observer.echo(marker)
    await Promise.race([flushed, new Promise((resolve) => setTimeout(resolve, 5000).unref())])
    const executed = new Map<string, number>()
    for (const [name, calls] of after) {
      const delta = calls - (before.get(name) ?? 0)
      if (name !== 'info' && name !== 'monitor' && delta > 0) executed.set(name, delta)
    }
    const sum = (counts: Map<string, number>): number => [...counts.values()].reduce((a, b) => a + b, 0)
    return { sends, executed: sum(executed), executedByName: describeCounts(executed), issued: sum(issued), issuedByName: describeCounts(issued), tokenIssued }
  } finally {
    monitor?.disconnect()
    observer?.disconnect()
    await app?.close()
    await sim?.close()
  }
}

interface FleetResult { stableTokenCalls: number, newTokens: number, accepted: number, ok: number, errors: string[] }

async function coldFleet (redis: PrivateRedis, run: number): Promise<FleetResult> {
  const sim = await createSimulator()
  const env = {
    REDIS_URL: redis.url,
    SIM_URL: sim.url,
    APP_ID: sim.appId,
    APP_SECRET: sim.appSecret,
    KEY_PREFIX: `bench:fleet:${process.pid}:${run}:`,
    SENDS: String(SENDS_PER_WORKER)
  }
  const children = Array.from({ length: FLEET_SIZE }, () => forkTs(FLEET_WORKER, env))
  try {
    await Promise.all(children.map((child) => nextMessage(child, 'ready')))
    const done = children.map((child) => nextMessage<{ ok: number, errors: string[] }>(child, 'done'))
    for (const child of children) child.send('go')
    const reports = await Promise.all(done)
    const codes = await Promise.all(children.map((child) => exited(child)))
    const errors = reports.flatMap((r) => r.errors)
    if (codes.some((code) => code !== 0)) errors.push(`worker exit codes ${codes.join(',')}`)
    return {
      stableTokenCalls: sim.counters.stable_token,
      newTokens: sim.tokenFetches().stable_token,
      accepted: sim.accepted.length,
      ok: reports.reduce((sum, r) => sum + r.ok, 0),
      errors
    }
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await sim.close()
  }
}

export interface TokenBenchResult { table: string, ok: boolean }

export async function runTokenBench (): Promise<TokenBenchResult> {
  const sends = envNumber('BENCH_TOKEN_SENDS', 2000)
  const runs = envNumber('BENCH_FLEET_RUNS', 3)
  const redis = await startRedis()
  try {
    progress(`token: redis ${redis.url}; ${sends} warm sends on the Redis store`)
    const commands = await redisCommandsPerSend(redis, sends)
    const fleets: FleetResult[] = []
    for (let run = 1; run <= runs; run++) {
      progress(`token: cold fleet run ${run}/${runs}: ${FLEET_SIZE} processes x ${SENDS_PER_WORKER} concurrent sends`)
      fleets.push(await coldFleet(redis, run))
    }
    const total = FLEET_SIZE * SENDS_PER_WORKER
    const fleetErrors = fleets.flatMap((f) => f.errors)
    const perSend = (n: number): string => (n / commands.sends).toFixed(3)
    const checks = [
      // Every send writes its message record (#3, DESIGN.md: at most one pipelined round trip a send):
      // those commands are counted here, and only the token path has to cost none (#2).
      {
        metric: `Redis commands per warm send, INFO commandstats, Lua-internal included (N=${commands.sends}): the message records'`,
        measured: `${perSend(commands.executed)} (${commands.executedByName})`,
        target: 'none on the token path (below)',
        pass: null
      },
      {
        metric: 'Redis round trips per warm send (client-issued, MONITOR): record writes, gathered',
        measured: `${perSend(commands.issued)} (${commands.issuedByName})`,
        target: '≤ 1 (records)',
        pass: commands.issued <= commands.sends
      },
      {
        metric: '  of which touch the token keys (token path)',
        measured: perSend(commands.tokenIssued),
        target: '0',
        pass: commands.tokenIssued === 0
      },
      {
        metric: `stable_token calls, cold ${FLEET_SIZE}-process fleet × ${SENDS_PER_WORKER} sends (per run)`,
        measured: fleets.map((f) => f.stableTokenCalls).join(', '),
        target: '1',
        pass: fleets.every((f) => f.stableTokenCalls === 1)
      },
      {
        metric: 'new tokens issued by the simulator (per run)',
        measured: fleets.map((f) => f.newTokens).join(', '),
        target: '1',
        pass: fleets.every((f) => f.newTokens === 1)
      },
      {
        metric: 'fleet sends succeeded / accepted (per run)',
        measured: fleets.map((f) => `${f.ok}/${f.accepted}`).join(', '),
        target: `${total}/${total}`,
        pass: fleets.every((f) => f.ok === total && f.accepted === total) && fleetErrors.length === 0
      }
    ]
    const table = formatTable(['metric', 'measured', 'target', 'ok'], checks.map((c) => [c.metric, c.measured, c.target, c.pass === null ? '—' : c.pass ? 'ok' : 'MISSED']))
    const notes = fleetErrors.length > 0 ? `\nfleet errors: ${fleetErrors.slice(0, 5).join('; ')}\n` : ''
    return { table: `Token sharing — counted, not timed\n\n${table}\n${notes}`, ok: checks.every((c) => c.pass !== false) }
  } finally {
    await redis.stop()
  }
}

if (require.main === module) {
  runTokenBench().then(({ table }) => { process.stdout.write(`\n${table}`) }, (err) => {
    console.error(err)
    process.exitCode = 1
  })
}
