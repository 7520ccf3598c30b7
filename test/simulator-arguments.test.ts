import { test } from 'tap'
import type { Test } from 'tap'
import { buildSimPush, createSimulator, DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import type { WechatSimulator } from '../lib/testing/index.js'

const KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG'

async function start (t: Test): Promise<WechatSimulator> {
  const sim = await createSimulator()
  t.teardown(() => sim.close())
  return sim
}

// A control argument the simulator would silently ignore makes a test pass for the wrong reason:
// each is refused with a TypeError naming the argument, as the numeric checks already were.
test('failNext refuses unknown fault fields and wrong types', async (t) => {
  const sim = await start(t)
  t.throws(() => sim.failNext('send', { errCode: 40001 } as never), { name: 'TypeError', message: /errCode/ })
  t.throws(() => sim.failNext('send', { drop: 'yes' } as never), { name: 'TypeError', message: /drop/ })
  t.throws(() => sim.failNext('send', { processed: 1 } as never), { name: 'TypeError', message: /processed/ })
  t.throws(() => sim.failNext('send', { omitMsgid: 'true' } as never), { name: 'TypeError', message: /omitMsgid/ })
  t.throws(() => sim.failNext('send', { errcode: '40001' } as never), { name: 'TypeError', message: /errcode/ })
  t.throws(() => sim.failNext('send', { httpStatus: 200 }), { name: 'TypeError', message: /httpStatus/ }, 'alone, 200 is no fault')
  t.equal(sim.pendingFaults(), 0, 'nothing was queued')
  // Documented uses stay allowed: {} is one normal answer, httpStatus 200 with an errcode is the usual error shape.
  sim.failNext('send', {})
  sim.failNext('send', { httpStatus: 200, errcode: -1 })
  t.equal(sim.pendingFaults('send'), 2)
})

test('pushConfig refuses a bad EncodingAESKey, mode, format or unknown field', async (t) => {
  const sim = await start(t)
  const base = { url: 'http://127.0.0.1:1', token: 't' }
  t.throws(() => sim.pushConfig({ ...base, encodingAESKey: 'too-short' }), { name: 'TypeError', message: /encodingAESKey/ })
  t.throws(() => sim.pushConfig({ ...base, encodingAESKey: KEY.slice(1) + '+' }), { name: 'TypeError', message: /encodingAESKey/ })
  t.throws(() => sim.pushConfig({ ...base, mode: 'secure' as never }), { name: 'TypeError', message: /mode/ })
  t.throws(() => sim.pushConfig({ ...base, mode: 'safe' }), { name: 'TypeError', message: /encodingAESKey/ }, 'safe needs a key')
  t.throws(() => sim.pushConfig({ ...base, format: 'yaml' as never }), { name: 'TypeError', message: /format/ })
  t.throws(() => sim.pushConfig({ ...base, encodingAesKey: KEY } as never), { name: 'TypeError', message: /encodingAesKey/ })
  t.throws(() => sim.pushConfig({ ...base, sentEvents: 'no' } as never), { name: 'TypeError', message: /sentEvents/ })
  t.throws(() => sim.pushConfig({ ...base, toUserName: '' }), { name: 'TypeError', message: /toUserName/ })
  t.throws(() => sim.pushConfig({ ...base, path: 'wechat/push' }), { name: 'TypeError', message: /path/ })
  sim.pushConfig({ ...base, encodingAESKey: KEY, mode: 'compatible', format: 'json', path: '/wx', sentEvents: false, toUserName: 'gh_1' })
  t.throws(() => buildSimPush({}, { token: 't', mode: 'secure' as never, encodingAESKey: KEY }, 'wx1', 0), { name: 'TypeError', message: /mode/ })
  t.throws(() => buildSimPush({}, { token: 't', format: 'yaml' as never }, 'wx1', 0), { name: 'TypeError', message: /format/ })
})

test('createSimulator refuses a clock without now()', async (t) => {
  await t.rejects(createSimulator({ clock: {} as never }), { name: 'TypeError', message: /clock/ })
  await t.rejects(createSimulator({ clock: { now: 5 } as never }), { name: 'TypeError', message: /clock/ })
})

test('grantCredit: any template id is allowed (documented), the arguments are type-checked', async (t) => {
  const sim = await start(t)
  sim.grantCredit('oUser-000001', 'NotYetAddedTemplate', 1)
  t.equal(sim.credits('oUser-000001', 'NotYetAddedTemplate'), 1, 'a credit may come before addTemplate')
  sim.grantCredit('oUser-000001', DEMO_TEMPLATE_IDS.orderShipped)
  t.throws(() => sim.grantCredit(undefined as never, DEMO_TEMPLATE_IDS.orderShipped), { name: 'TypeError', message: /openid/ })
  t.throws(() => sim.grantCredit('oUser-000001', '' as never), { name: 'TypeError', message: /templateId/ })
})
