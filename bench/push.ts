/**
 * Push endpoint throughput (WECHAT.md §6): verified, decrypted, parsed, deduped and emitted pushes per
 * second on one core, through `app.inject` (no sockets: this measures the plugin, not the network).
 * Safe mode (msg_signature + AES-256-CBC, §6.3–§6.4) for XML and JSON, plaintext as the baseline.
 * Requests are built and encrypted before timing; every one is unique (distinct MsgID), so dedupe never
 * short-cuts the work. Variants are interleaved run by run; the table quotes the median of the runs.
 *
 *   npx tsx bench/push.ts        BENCH_PUSH_MS=250 BENCH_PUSH_RUNS=5 BENCH_PUSH_CONCURRENCY=8
 */
import { performance } from 'node:perf_hooks'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { wechatPush, testing } from './built.js'
import type { SimPushRequest } from '../lib/testing/index.js'
import { envNumber, formatTable, median, progress } from './stats.js'

const { buildSimPush } = testing

const APP_ID = 'wxbench0000000001'
const TOKEN = 'benchToken123'
const KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG'
const NOW = 1767225600_000
const RUN_MS = envNumber('BENCH_PUSH_MS', 250)
const RUNS = envNumber('BENCH_PUSH_RUNS', 5)
const CONCURRENCY = envNumber('BENCH_PUSH_CONCURRENCY', 8)
const POOL = 4000 // unique pushes per variant; a run stops early if it uses them all (the rate stays valid)

interface Variant { name: string, mode: 'plaintext' | 'safe', format: 'xml' | 'json' }
const VARIANTS: Variant[] = [
  { name: 'plaintext', mode: 'plaintext', format: 'xml' },
  { name: 'safe', mode: 'safe', format: 'xml' },
  { name: 'plaintext', mode: 'plaintext', format: 'json' },
  { name: 'safe', mode: 'safe', format: 'json' }
]

/** A typical sent event (§7.3), made unique by its MsgID. */
function sentEvent (i: number): Record<string, unknown> {
  return {
    ToUserName: 'gh_0a1b2c3d4e5f',
    FromUserName: `oUser-bench-${i % 1000}`,
    CreateTime: NOW / 1000,
    MsgType: 'event',
    Event: 'subscribe_msg_sent_event',
    List: [{ TemplateId: 'TplAaaaExample111', MsgID: String(2100000000000000000n + BigInt(i)), ErrorCode: 0, ErrorStatus: 'success' }]
  }
}

function buildPool (variant: Variant): SimPushRequest[] {
  const options = { token: TOKEN, mode: variant.mode, format: variant.format, timestamp: NOW / 1000, ...(variant.mode === 'safe' ? { encodingAESKey: KEY } : {}) }
  return Array.from({ length: POOL }, (_, i) => buildSimPush(sentEvent(i), { ...options, nonce: String(1e9 + i) }, APP_ID, NOW))
}

async function buildApp (variant: Variant): Promise<{ app: FastifyInstance, handled: () => number }> {
  const app = Fastify({ logger: false })
  await app.register(wechatPush, {
    appId: APP_ID,
    appSecret: 'bench-secret',
    baseUrl: 'http://127.0.0.1:9', // never called: the token job's failure is only logged
    refreshInterval: 3600,
    queue: false,
    clock: { now: () => NOW },
    push: variant.mode === 'safe' ? { token: TOKEN, encodingAESKey: KEY, mode: 'safe' } : { token: TOKEN, mode: 'plaintext' }
  })
  let handled = 0
  app.wechat.on('event', () => { handled++ })
  await app.ready()
  return { app, handled: () => handled }
}

/** Closed loop: `CONCURRENCY` injectors until RUN_MS passed. Returns pushes per second. */
async function run (variant: Variant, pool: SimPushRequest[]): Promise<number> {
  const { app, handled } = await buildApp(variant)
  let next = 0
  const end = performance.now() + RUN_MS
  const start = performance.now()
  const worker = async (): Promise<void> => {
    while (performance.now() < end && next < pool.length) {
      const push = pool[next++]
      const res = await app.inject({ method: 'POST', url: push.url, payload: push.body, headers: { 'content-type': push.contentType } })
      if (res.body !== 'success') throw new Error(`${variant.name}/${variant.format}: ${res.statusCode} ${res.body}`)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  const seconds = (performance.now() - start) / 1000
  await new Promise((resolve) => setImmediate(resolve))
  if (handled() !== next) throw new Error(`${variant.name}/${variant.format}: ${next} accepted but ${handled()} handled`)
  await app.close()
  return next / seconds
}

async function main (): Promise<void> {
  progress('building and encrypting the request pools')
  const pools = VARIANTS.map(buildPool)
  for (let i = 0; i < VARIANTS.length; i++) await run(VARIANTS[i], pools[i].slice(0, 500)) // warm-up (JIT)
  const rates: number[][] = VARIANTS.map(() => [])
  for (let r = 0; r < RUNS; r++) {
    progress(`run ${r + 1}/${RUNS}`)
    for (let k = 0; k < VARIANTS.length; k++) {
      const i = (k + r) % VARIANTS.length // rotate the order each run
      rates[i].push(await run(VARIANTS[i], pools[i]))
    }
  }
  const rows = VARIANTS.map((variant, i) => {
    const base = VARIANTS.findIndex((v) => v.mode === 'plaintext' && v.format === variant.format)
    const rate = median(rates[i])
    return [`${variant.name} ${variant.format.toUpperCase()}`, Math.round(rate).toLocaleString('en-US'), (1e6 / rate).toFixed(1), (rate / median(rates[base])).toFixed(2)]
  })
  process.stdout.write(`\nPush endpoint, app.inject, ${CONCURRENCY} in flight, median of ${RUNS} runs of ${RUN_MS} ms (Node ${process.version})\n`)
  process.stdout.write(`${formatTable(['variant', 'pushes/s', 'µs/push', 'vs plaintext'], rows)}\n`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
