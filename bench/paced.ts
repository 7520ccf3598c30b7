import { performance } from 'node:perf_hooks'
import { Pool } from 'undici'
import { percentile } from './stats.js'

export interface PacedOptions {
  url: string
  path: string
  method?: 'GET' | 'POST'
  body?: string
  rate: number
  seconds: number
}

export interface PacedRun { rate: number, p50: number, p99: number, bad: number, total: number }

/**
 * An open-loop load at a steady rate: request i is started at t0 + i / rate, whatever the answers
 * before it did (a 1 ms timer issues every request that is due). autocannon's `overallRate` instead
 * lets each connection fire its per-second quota back to back at the start of every second, which
 * measures the queueing behind that burst rather than what a request costs under ordinary load.
 * Latency is from the moment the request was due to the end of its answer, in ms.
 */
export async function paced (options: PacedOptions): Promise<PacedRun> {
  const origin = new URL(options.url).origin
  const pool = new Pool(origin, { connections: 64, pipelining: 1 })
  const total = Math.round(options.rate * options.seconds)
  const latencies = new Float64Array(total)
  let bad = 0
  let issued = 0
  let done = 0
  const headers = options.body === undefined ? undefined : { 'content-type': 'application/json' }
  const start = performance.now()
  const started = performance.now()
  await new Promise<void>((resolve) => {
    const one = (i: number, due: number): void => {
      pool.request({ path: options.path, method: options.method ?? 'GET', body: options.body, headers })
        .then(async (res) => {
          await res.body.dump()
          if (res.statusCode >= 300) bad++
        }, () => { bad++ })
        .finally(() => {
          latencies[i] = performance.now() - due
          if (++done === total) resolve()
        })
    }
    const tick = (): void => {
      const now = performance.now()
      while (issued < total) {
        const due = start + (issued * 1000) / options.rate
        if (due > now) break
        one(issued++, due)
      }
      if (issued < total) setTimeout(tick, 1)
    }
    tick()
  })
  const elapsed = (performance.now() - started) / 1000
  await pool.close()
  const sorted = latencies.sort()
  return { rate: total / elapsed, p50: round1(percentile(sorted, 50)), p99: round1(percentile(sorted, 99)), bad, total }
}

const round1 = (n: number): number => Math.round(n * 10) / 10
