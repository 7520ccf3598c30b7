/**
 * Dev helper, not part of `npm run bench`: one variant of bench/send.ts alone, for profiling. After a
 * 3 s warm-up it sends for PROF_SECONDS (8) at 64 in flight and prints sends/s and the CPU per send
 * of the client, the simulator child and redis-server.
 *   npx tsx bench/prof-send.ts            wechat.send, memory store
 *   PROF_REDIS=1 …                        wechat.send, Redis store
 *   PROF_RAW=1 …                          raw undici, the request bench/send.ts makes by hand
 *   PROF_OUT=file.cpuprofile …            also write a CPU profile of the measured seconds
 *   PROF_HEAP=file.heapprofile …          also write a sampling heap profile of every allocation in them
 *                                         (collected ones included: where the garbage comes from)
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import Fastify from 'fastify'
import { Pool } from 'undici'
import { wechatPush } from './built.js'
import { shippedMessage } from '../test/helpers/app.js'
import { SimChild } from './sim-child.js'
import fastifyRedis from '@fastify/redis'
import { startRedis } from '../test/helpers/redis-server.js'

async function run (send: () => Promise<unknown>, seconds: number): Promise<{ n: number, cpu: number }> {
  const end = Date.now() + seconds * 1000
  let n = 0
  const cpu0 = process.cpuUsage()
  await Promise.all(Array.from({ length: 64 }, async () => { while (Date.now() < end) { await send(); n++ } }))
  const cpu = process.cpuUsage(cpu0)
  return { n, cpu: (cpu.user + cpu.system) / n }
}

async function main (): Promise<void> {
  const sim = await SimChild.start()
  const redis = process.env.PROF_REDIS ? await startRedis() : undefined
  const app = Fastify({ logger: false })
  if (redis) await app.register(fastifyRedis, { url: redis.url, maxRetriesPerRequest: 1 })
  await app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, store: redis ? 'redis' : 'memory' })
  await app.ready()
  let send = (): Promise<unknown> => app.wechat.send(shippedMessage())
  if (process.env.PROF_RAW) {
    // the same request by hand (as bench/send.ts's raw side)
    const pool = new Pool(sim.url, { connections: 128 })
    const path = `/cgi-bin/message/subscribe/send?${new URLSearchParams({ access_token: await app.wechat.getToken() })}`
    send = async () => {
      const m = shippedMessage()
      const data: Record<string, { value: string }> = {}
      for (const [key, value] of Object.entries(m.data)) data[key] = { value: String(value) }
      const body = JSON.stringify({ touser: m.toUser, template_id: m.templateId, data, page: m.page })
      const response = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body })
      const answer = JSON.parse(await response.body.text()) as { errcode?: number }
      if (response.statusCode !== 200 || (answer.errcode ?? 0) !== 0) throw new Error('failed')
    }
  }
  await run(send, 3)
  const session = new Session()
  const out = process.env.PROF_OUT
  if (out) {
    session.connect()
    await session.post('Profiler.enable')
    await session.post('Profiler.start')
  }
  const heapOut = process.env.PROF_HEAP
  if (heapOut) {
    if (!out) session.connect()
    await session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !process.env.PROF_HEAP_PROMOTED } as any)
  }
  const seconds = Number(process.env.PROF_SECONDS ?? 8)
  const redisCpu = async (): Promise<number> => {
    if (!redis) return 0
    const info = await (app as any).redis.info('cpu') as string
    const get = (name: string): number => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0)
    return get('used_cpu_sys') + get('used_cpu_user')
  }
  // the simulator child's CPU (utime + stime in clock ticks of 10 ms)
  const simPid = sim.pid
  const simCpu = (): number => { const f = readFileSync(`/proc/${simPid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10_000 }
  const commandStats = async (): Promise<Map<string, { calls: number, usec: number }>> => {
    const stats = new Map<string, { calls: number, usec: number }>()
    if (!redis) return stats
    const info = await (app as any).redis.info('commandstats') as string
    for (const m of info.matchAll(/cmdstat_(\w+(?:\|\w+)?):calls=(\d+),usec=(\d+)/g)) stats.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) })
    return stats
  }
  const sim0 = simCpu()
  const redis0 = await redisCpu()
  const stats0 = await commandStats()
  const { n, cpu } = await run(send, seconds)
  console.log(`simulator: ${((simCpu() - sim0) / n).toFixed(1)} µs CPU/send`)
  if (redis) {
    console.log(`redis-server: ${((await redisCpu() - redis0) * 1e6 / n).toFixed(1)} µs CPU/send`)
    // per command, as redis-server counts it (commands run inside scripts included): calls and µs per send
    for (const [name, after] of await commandStats()) {
      const before = stats0.get(name) ?? { calls: 0, usec: 0 }
      if (name === 'info' || after.calls === before.calls) continue
      console.log(`  ${name}: ${((after.calls - before.calls) / n).toFixed(3)} calls/send, ${((after.usec - before.usec) / n).toFixed(2)} µs/send`)
    }
  }
  if (out) {
    const { profile } = await session.post('Profiler.stop')
    writeFileSync(out, JSON.stringify(profile))
  }
  if (heapOut) {
    const { profile } = await session.post('HeapProfiler.stopSampling')
    writeFileSync(heapOut, JSON.stringify(profile))
  }
  console.log(`${process.env.PROF_RAW ? 'raw' : redis ? 'redis' : 'memory'}: ${Math.round(n / seconds)} sends/s, ${cpu.toFixed(1)} µs CPU/send`)
  await app.close(); await sim.close(); await redis?.stop()
}
main().catch((err) => { console.error(err); process.exitCode = 1 })
