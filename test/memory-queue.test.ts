import { test } from 'tap'
import Fastify from 'fastify'
import { MemoryQueue } from '../lib/delivery/memory-queue.js'
import type { JobData, JobRunner } from '../lib/delivery/job-runner.js'
import { until } from './queue-helpers.js'
import { buildApp, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'

/** A runner that finishes every message at once: what is measured here is the queue's own state. */
function instantRunner (ran: string[]): JobRunner {
  return { run: async (data: JobData) => { ran.push(data.id); return { kind: 'done', status: 'sent' } } } as unknown as JobRunner
}

function job (i: number): { data: JobData } {
  return { data: { id: `m${i}`, wire: { touser: 'o', template_id: 't', data: {} } as unknown as JobData['wire'] } }
}

test('the in-process queue keeps nothing per message once it is done (without a limiter, start times were kept forever)', async (t) => {
  const ran: string[] = []
  const queue = new MemoryQueue(instantRunner(ran), { concurrency: 8, attempts: 3 }, Fastify({ logger: false }).log)
  await queue.start()
  await queue.add(Array.from({ length: 5000 }, (_, i) => job(i)))
  await until('all run', () => ran.length === 5000)
  const state = queue as unknown as { starts: { length: number }, ready: { length: number }, known: Set<string> }
  t.same([state.starts.length, state.ready.length, state.known.size], [0, 0, 0], 'no start times, no waiting entries, no known ids left')
  await queue.close(100)
})

// Audit: queue.replicas on the memory store was taken without a word, though it does nothing there.
test('queue.replicas on the in-process queue: a startup warning says it has no effect', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs('warn')
  await buildApp(t, sim, { logger: logs.logger, plugin: { queue: { replicas: 1 } } })
  t.ok(logs.lines.some((line) => line.includes('queue.replicas has no effect on the in-process queue')))
})

// Audit: queue.durable: true without Redis gave the in-process queue with only the info line every app gets.
test('queue.durable: true without Redis: a startup warning says the queue is not durable', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs('warn')
  await buildApp(t, sim, { logger: logs.logger, plugin: { queue: { durable: true } } })
  t.ok(logs.lines.some((line) => line.includes('queue.durable: true') && line.includes('not durable')))
})
