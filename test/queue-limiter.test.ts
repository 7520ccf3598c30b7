import { test } from 'tap'
import { buildApp, startSimulator } from './helpers/app.js'
import { redisFor, uniquePrefix } from './helpers/redis-server.js'
import { numbered, settled, statusCounts } from './queue-helpers.js'

const MAX = 20
const DURATION = 1000
const COUNT = 60
const JITTER_MS = 500

/** The most acceptances within any window of `windowMs` (sliding). */
function busiestWindow (times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b)
  let best = 0
  let start = 0
  for (let end = 0; end < sorted.length; end++) {
    while ((sorted[end] as number) - (sorted[start] as number) >= windowMs) start++
    best = Math.max(best, end - start + 1)
  }
  return best
}

for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: limiter { max: ${MAX}, duration: ${DURATION} } → ${COUNT} messages spread over ≥ 2 s, ≤ max per second`, async (t) => {
    // A simulator on real time, so each acceptance carries the wall-clock time it reached "WeChat".
    const sim = await startSimulator(t, { clock: { now: () => Date.now() } })
    const redisUrl = await redisFor(t, kind)
    const app = await buildApp(t, sim, { redisUrl, plugin: { keyPrefix: uniquePrefix('limiter'), queue: { concurrency: 8, limiter: { max: MAX, duration: DURATION } } } })
    await app.wechat.getToken()
    const results = await app.wechat.enqueue(Array.from({ length: COUNT }, (_, i) => numbered(`L${kind[0]}`, i)))
    await settled(app, results.map((r) => r.id), 20_000)
    t.same(await statusCounts(app, results.map((r) => r.id)), { sent: COUNT })

    const times = sim.accepted.map((m) => m.at)
    const span = Math.max(...times) - Math.min(...times)
    // The limiter counts job starts; the simulator sees arrivals, a few ms to tens of ms later, and
    // not all equally late (more so on a loaded machine). Windows JITTER_MS shorter than the
    // limiter's keep that jitter out; without a limiter all 60 would land within ~100 ms.
    const busiest = busiestWindow(times, DURATION - JITTER_MS)
    t.comment(`${kind}: ${COUNT} sends over ${span} ms, busiest ${DURATION - JITTER_MS}-ms window ${busiest}`)
    t.ok(span >= (COUNT / MAX - 1) * DURATION - JITTER_MS, `spread over ${span} ms (3 windows of ${MAX} need ≥ ~2 s)`)
    // BullMQ's limiter counts fixed windows: a burst at a window's end and the next window's start can
    // meet in one sliding window, so only the in-process (sliding) limiter is held to max + 2.
    const allowed = kind === 'bullmq' ? Math.ceil(MAX * 1.5) : MAX + 2
    t.ok(busiest <= allowed, `busiest window: ${busiest} (max ${MAX}, allowed ${allowed})`)
  })
}
