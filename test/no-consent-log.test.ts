import { test } from 'tap'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { settled } from './queue-helpers.js'

// Issue #4: a 43101 (the user has no subscription left) is counted as "no consent", not as an alarm.
// Every one was a `warn` line, twice for a queued message: the floods of 43101 warnings teams mute.
// Failed before (warn lines with errcode 43101).
test('43101 is logged at info, direct and queued; other errcodes stay warnings', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs('info')
  const app = await buildApp(t, sim, { logger: logs.logger })
  sim.failNext('send', { errcode: 43101 })
  await t.rejects(app.wechat.send(shippedMessage()), { code: 'FST_WECHAT_API', errcode: 43101 })
  sim.failNext('send', { errcode: 43101 })
  const [queued] = await app.wechat.enqueue(shippedMessage())
  await settled(app, [queued?.id as string])
  t.equal((await app.wechat.status(queued?.id as string))?.errcode, 43101)
  const lines = logs.parsed().filter((line) => line.errcode === 43101)
  t.ok(lines.length >= 3, `43101 lines logged (${lines.length})`)
  t.same(lines.filter((line) => (line.level as number) >= 40), [], 'none at warn or above')
  t.equal((await app.wechat.stats()).noConsent, 2, 'counted as no consent')

  sim.failNext('send', { errcode: 40003 })
  await t.rejects(app.wechat.send(shippedMessage()), { code: 'FST_WECHAT_API', errcode: 40003 })
  t.ok(logs.parsed().some((line) => line.errcode === 40003 && line.level === 40), 'another refusal is still a warning')
})
