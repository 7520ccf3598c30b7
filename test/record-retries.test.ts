import { test } from 'tap'
import Fastify from 'fastify'
import type { FastifyBaseLogger } from 'fastify'
import { MAX_HELD_RECORDS, RecordRetries } from '../lib/delivery/record-retries.js'
import { captureLogs } from './helpers/log-capture.js'

function logger (): { log: FastifyBaseLogger, parsed: () => Record<string, unknown>[] } {
  const logs = captureLogs('info')
  return { log: Fastify({ logger: logs.logger }).log, parsed: logs.parsed }
}

test('held record writes are bounded (the oldest dropped), written once the store answers, and what was dropped is logged', async (t) => {
  const { log, parsed } = logger()
  const retries = new RecordRetries(log)
  let up = false
  const written: string[] = []
  const entry = (id: string): { id: string, write: () => Promise<void> } => ({
    id,
    write: async () => {
      if (!up) throw new Error('store down')
      written.push(id)
    }
  })
  for (let i = 0; i <= MAX_HELD_RECORDS; i++) retries.hold(entry(`m${i}`), new Error('store down'))
  t.equal(retries.size, MAX_HELD_RECORDS, 'bounded')
  t.equal(parsed().filter((line) => String(line.msg).includes('could not write the message record')).length, 1, 'logged once')
  up = true
  const deadline = Date.now() + 10_000
  while (retries.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(retries.size, 0)
  t.equal(written.length, MAX_HELD_RECORDS)
  t.notOk(written.includes('m0'), 'the oldest was dropped')
  t.equal(written[0], 'm1')
  t.match(parsed().find((line) => String(line.msg).includes('the oldest were dropped')), { level: 50, lost: 1 })
  t.match(parsed().find((line) => String(line.msg).includes('held message records are written')), { written: MAX_HELD_RECORDS })
  await retries.close()
})

test('a write after close() is logged as lost at once; close() with the store still down logs what is lost', async (t) => {
  const { log, parsed } = logger()
  const retries = new RecordRetries(log)
  retries.hold({ id: 'a', write: async () => { throw new Error('down') } }, new Error('down'))
  await retries.close()
  t.match(parsed().find((line) => String(line.msg).includes('not confirmed written before close')), { lost: 1, messageIds: ['a'] })
  retries.hold({ id: 'b', write: async () => {} }, null)
  t.match(parsed().find((line) => line.messageId === 'b'), { level: 40, reason: 'null', msg: /the app is closing.*lost/ })
  t.equal(retries.size, 0)
})
