import { test } from 'tap'
import type { ChangeEvent } from '../lib/public-types.js'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import { shippedMessage, startSimulator } from './helpers/app.js'
import { KEY, pushApp, TOKEN, waitFor } from './push-helpers.js'

const ORDER = DEMO_TEMPLATE_IDS.orderShipped

// WECHAT.md §7.2: a rejection leaves the user with no subscription for the template: "Later sends would
// get 43101 anyway". Track mode lets every send reach the simulator, so WeChat's answer is what we see.
test('a pop-up reject zeroes the simulator credits of that user and template: the next send gets 43101', async (t) => {
  const sim = await startSimulator(t, { requireCredits: true })
  const { app, url } = await pushApp(t, sim, { listen: true, plugin: { credits: 'track' } })
  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY })
  const openid = 'oReject-user-000000001'
  await sim.popup([{ openid, templateId: ORDER, status: 'accept' }])
  await sim.popup([{ openid, templateId: ORDER, status: 'accept' }])
  sim.grantCredit('oReject-user-000000099', ORDER, 1)
  t.equal(sim.credits(openid, ORDER), 2)
  await sim.popup([{ openid, templateId: ORDER, status: 'reject' }])
  t.equal(sim.credits(openid, ORDER), 0, 'the reject zeroed the stacked credits')
  t.equal(sim.credits('oReject-user-000000099', ORDER), 1, 'other users keep theirs')
  t.match(await app.wechat.send(shippedMessage(openid)).catch((e) => e), { errcode: 43101 })
})

test('sim.change pushes a subscribe_msg_change_event reject and zeroes the credits first', async (t) => {
  const sim = await startSimulator(t, { requireCredits: true })
  const { app, url } = await pushApp(t, sim, { listen: true, plugin: { credits: 'track' } })
  const changes: ChangeEvent[] = []
  app.wechat.on('subscribe_msg_change_event', (event) => { changes.push(event) })
  const openid = 'oReject-user-000000002'
  await t.rejects(sim.change([{ openid, templateId: ORDER, status: 'reject' }]), TypeError, 'needs pushConfig')
  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY, format: 'json' })
  sim.grantCredit(openid, ORDER, 3)
  sim.grantCredit(openid, DEMO_TEMPLATE_IDS.reviewResult, 1)

  t.same(await sim.change([{ openid, templateId: ORDER, status: 'reject' }]), [{ statusCode: 200, body: 'success' }])
  t.equal(sim.credits(openid, ORDER), 0)
  t.equal(sim.credits(openid, DEMO_TEMPLATE_IDS.reviewResult), 1, 'only the rejected template')
  await waitFor(() => changes.length === 1)
  t.equal(changes[0].FromUserName, openid)
  t.same(changes[0].List, [{ TemplateId: ORDER, SubscribeStatusString: 'reject' }], 'no PopupScene in a change event (§7.2)')
  t.match(await app.wechat.send(shippedMessage(openid)).catch((e) => e), { errcode: 43101 })

  // The URL form, and status may be left out: only rejections are ever pushed.
  t.same(await sim.change(url, [{ openid, templateId: DEMO_TEMPLATE_IDS.reviewResult }]), [{ statusCode: 200, body: 'success' }])
  t.equal(sim.credits(openid, DEMO_TEMPLATE_IDS.reviewResult), 0)
  await waitFor(() => changes.length === 2)
  t.ok(changes[1].CreateTime > changes[0].CreateTime || changes[1].List[0].TemplateId !== changes[0].List[0].TemplateId)

  await t.rejects(sim.change([]), TypeError)
  await t.rejects(sim.change(url), TypeError, 'a URL but no items')
  await t.rejects(sim.change([{ openid, templateId: ORDER, status: 'accept' as never }]), TypeError, 'change events only carry rejections')
})

// Audit: CreateTimes were kept per (user, event, templates): a change after two pop-up accepts got the
// first pop-up's second, and the plugin read its reject as older than the second accept (credits 2,
// not 0; under enforce the next send went to WeChat and met 43101). Failed before.
test('a change after two pop-up accepts, on the frozen clock: the plugin\'s credits end at 0 too', async (t) => {
  const sim = await startSimulator(t, { requireCredits: true })
  const { app, url } = await pushApp(t, sim, { listen: true, plugin: { credits: 'enforce' } })
  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY })
  const openid = 'oReject-user-000000003'
  await sim.popup([{ openid, templateId: ORDER, status: 'accept' }])
  await sim.popup([{ openid, templateId: ORDER, status: 'accept' }])
  const creditsAre = async (n: number): Promise<void> => {
    for (let i = 0; i < 200 && (await app.wechat.credits(openid))[ORDER] !== n; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  await creditsAre(2)
  t.same(await app.wechat.credits(openid), { [ORDER]: 2 }, 'two accepts')
  await sim.change([{ openid, templateId: ORDER, status: 'reject' }])
  await creditsAre(0)
  t.same(await app.wechat.credits(openid), { [ORDER]: 0 }, 'the reject is the newest action')
  const calls = sim.counters.send
  t.match(await app.wechat.send(shippedMessage(openid)).catch((e) => e), { code: 'FST_WECHAT_NO_CREDIT' })
  t.equal(sim.counters.send, calls, 'refused without a call')
})
