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

// Each of these was accepted (requireCredits: 'false' turned credits on, a misspelt option or push
// option was ignored, a typo'd encodingAesKey pushed plaintext) or failed later with a message naming
// no option ("map is not a function", a plain Error from the cipher). Failed before.
test('createSimulator refuses unknown options and flags that are not booleans, naming them', async (t) => {
  const bad: Array<[object | null, RegExp]> = [
    [{ requireCredits: 'false' }, /createSimulator: requireCredits must be a boolean/],
    [{ returnMsgid: 'false' }, /createSimulator: returnMsgid must be a boolean/],
    [{ logger: 'yes' }, /createSimulator: logger must be a boolean/],
    [{ requireCredit: true }, /createSimulator: unknown option "requireCredit"/],
    [{ latencyMs: -1 }, /createSimulator: latencyMs must be/],
    [{ pushRetryDelayMs: -1 }, /createSimulator: pushRetryDelayMs must be/],
    [null, /createSimulator: options must be an object/]
  ]
  for (const [options, message] of bad) {
    await t.rejects(createSimulator(options as never), { name: 'TypeError', message }, JSON.stringify(options))
  }
  const sim = await start(t)
  t.throws(() => sim.setLatency(-1), { name: 'TypeError', message: /setLatency: ms must be/ })
  t.throws(() => sim.failNext('send', [] as never), { name: 'TypeError', message: /failNext: fault must be an object/ }, 'an array is not {}')
  t.equal(sim.pendingFaults(), 0)
})

test('sim.push and buildSimPush refuse unknown options and bad values before anything is sent', async (t) => {
  const sim = await start(t)
  const url = 'http://127.0.0.1:1'
  const event = { FromUserName: 'oUser-000001', Event: 'debug_demo' }
  const bad: Array<[object, RegExp]> = [
    [{ token: 't', encodingAesKey: KEY }, /sim\.push: unknown option "encodingAesKey"/],
    [{ token: 't', timestamp: 'abc' }, /sim\.push: timestamp must be an integer/],
    [{ token: 't', timestamp: 1.5 }, /sim\.push: timestamp must be an integer/],
    [{ token: 't', encodingAESKey: 'short' }, /sim\.push: encodingAESKey must be 43 characters/],
    [{ token: 't', nonce: 5 }, /sim\.push: nonce must be a non-empty string/],
    [{ token: 't', appId: '' }, /sim\.push: appId must be a non-empty string/],
    [{ token: 't', path: 'wechat/push' }, /sim\.push: path must be a string starting with \//]
  ]
  for (const [options, message] of bad) {
    await t.rejects(sim.push(url, event, options as never), { name: 'TypeError', message }, JSON.stringify(options))
    t.throws(() => buildSimPush(event, options as never, 'wx1', 0), { name: 'TypeError', message })
  }
  await t.rejects(sim.push(url, event, null as never), { name: 'TypeError', message: /sim\.push: options must be an object/ })
  await t.rejects(sim.push(5 as never, event, { token: 't' }), { name: 'TypeError', message: /sim\.push: appUrl must be a string/ })
  // (an audit: null failed with "Cannot read properties of null", a string was sent as a body)
  for (const notEvent of [null, 'abc', [event]]) {
    await t.rejects(sim.push(url, notEvent as never, { token: 't' }), { name: 'TypeError', message: /sim\.push: event must be an object/ }, JSON.stringify(notEvent))
  }
  t.same(sim.pushes, [], 'nothing was sent')
})

test('addTemplate and createSimulator({ templates }) refuse a malformed template, naming the field', async (t) => {
  const sim = await start(t)
  const good = { priTmplId: 'x', title: 't', content: 'a:{{enum_string1.DATA}}', type: 2 as const }
  const bad: Array<[object, RegExp]> = [
    [{ ...good, keywordEnumValueList: 'x' }, /template x: keywordEnumValueList must be an array of/],
    [{ ...good, keywordEnumValueList: [{ keywordCode: 'enum_string1' }] }, /template x: keywordEnumValueList must be an array of/],
    [{ ...good, keywordEnumValueList: [{ keywordCode: 'enum_string1', enumValueList: [1] }] }, /template x: keywordEnumValueList must be an array of/],
    [{ ...good, example: 5 }, /template x: example must be a string/],
    [{ ...good, Type: 2 }, /template x: unknown field "Type"/],
    [[good], /template must be an object/]
  ]
  for (const [template, message] of bad) {
    t.throws(() => sim.addTemplate(template as never), { name: 'TypeError', message }, JSON.stringify(template))
    await t.rejects(createSimulator({ templates: [template as never] }), { name: 'TypeError', message })
  }
  t.notOk(sim.templates().some((x) => x.priTmplId === 'x'), 'nothing was added')
  sim.addTemplate({ ...good, example: 'a:通过', keywordEnumValueList: [{ keywordCode: 'enum_string1.DATA', enumValueList: ['通过'] }] })
  t.equal(sim.templates().find((x) => x.priTmplId === 'x')?.example, 'a:通过')
})
