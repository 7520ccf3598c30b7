import { test } from 'tap'
import { createServer as createHttpServer } from 'node:http'
import { createServer } from 'node:net'
import type { Socket } from 'node:net'
import type { PopupEvent, SentEvent } from '../lib/public-types.js'
import { request } from 'undici'
import { DEFAULT_TO_USER_NAME, DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import type { Teardown } from './helpers/app.js'
import { freePort } from './helpers/redis-server.js'
import { KEY, pushApp, TOKEN, waitFor } from './push-helpers.js'
import { until } from './queue-helpers.js'

test('pushConfig: every accepted send is followed by a subscribe_msg_sent_event with its MsgID', async (t) => {
  const sim = await startSimulator(t, { latencyMs: 5 })
  const { app, url } = await pushApp(t, sim, { listen: true })
  const sent: SentEvent[] = []
  app.wechat.on('subscribe_msg_sent_event', (event) => { sent.push(event) })
  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY, format: 'json' })

  const results = await Promise.all(Array.from({ length: 8 }, () => app.wechat.send(shippedMessage())))
  await sim.pushesSettled()
  await waitFor(() => sent.length === 8)
  t.same(sent.map((e) => e.List[0].MsgID).sort(), results.map((r) => r.msgid).sort(), 'one sent event per send, same MsgIDs')
  t.ok(sent.every((e) => e.List[0].ErrorCode === 0 && e.List[0].TemplateId === DEMO_TEMPLATE_IDS.orderShipped && e.ToUserName === DEFAULT_TO_USER_NAME))
  t.equal(sim.pushes.filter((p) => p.event === 'subscribe_msg_sent_event' && p.statusCode === 200 && p.body === 'success').length, 8)

  sim.failNext('send', { errcode: 40003 })
  await t.rejects(app.wechat.send(shippedMessage()))
  await sim.pushesSettled()
  t.equal(sim.pushes.length, 8, 'a refused send pushes nothing')

  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY, sentEvents: false })
  await app.wechat.send(shippedMessage())
  sim.pushConfig(null)
  await app.wechat.send(shippedMessage())
  await sim.pushesSettled()
  t.equal(sim.pushes.length, 8, 'sentEvents off, then no config: nothing pushed')
  sim.reset()
  t.equal(sim.pushes.length, 0)
})

test('the sent event comes even when the send answer carries no msgid (WECHAT.md §2.2)', async (t) => {
  const sim = await startSimulator(t, { returnMsgid: false })
  const { app, url } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext' }, listen: true })
  const sent: SentEvent[] = []
  app.wechat.on('subscribe_msg_sent_event', (event) => { sent.push(event) })
  sim.pushConfig({ url: `${url}/`, token: TOKEN })
  const result = await app.wechat.send(shippedMessage('oUser-no-msgid-0001'))
  t.equal(result.msgid, undefined)
  await waitFor(() => sent.length === 1)
  t.equal(sent[0].List[0].MsgID, sim.accepted[0].msgid)
  t.equal(sent[0].FromUserName, 'oUser-no-msgid-0001')
})

test('the sent event comes even when the send was processed but its answer was lost (a dropped connection)', async (t) => {
  const sim = await startSimulator(t)
  const { app, url } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext' }, listen: true })
  const sent: SentEvent[] = []
  app.wechat.on('subscribe_msg_sent_event', (event) => { sent.push(event) })
  sim.pushConfig({ url, token: TOKEN })
  // WeChat accepted the first attempt; only its answer never arrived, so the app retried (sent twice).
  sim.failNext('send', { drop: true, processed: true })
  await app.wechat.send(shippedMessage('oUser-dropped-00001'))
  t.equal(sim.accepted.length, 2)
  await waitFor(() => sent.length === 2)
  t.same(sent.map((e) => e.List[0].MsgID).sort(), sim.accepted.map((m) => m.msgid).sort(), 'one sent event per accepted message, the lost answer\'s included')
})

test('popup: grants simulator credits for accepts and pushes one popup event per user', async (t) => {
  const sim = await startSimulator(t, { requireCredits: true })
  const { app, url } = await pushApp(t, sim, { listen: true })
  const popups: PopupEvent[] = []
  app.wechat.on('subscribe_msg_popup_event', (event) => { popups.push(event) })
  await t.rejects(sim.popup([{ openid: 'oA', templateId: 'T', status: 'accept' }]), TypeError, 'needs pushConfig')
  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY, mode: 'safe', format: 'xml', toUserName: 'gh_custom' })
  const tpl = DEMO_TEMPLATE_IDS.orderShipped
  const results = await sim.popup([
    { openid: 'oUser-popup-000001', templateId: tpl, status: 'accept' },
    { openid: 'oUser-popup-000001', templateId: 'TplOther', status: 'reject' },
    { openid: 'oUser-popup-000002', templateId: tpl, status: 'accept' }
  ])
  t.same(results, [{ statusCode: 200, body: 'success' }, { statusCode: 200, body: 'success' }])
  t.equal(sim.credits('oUser-popup-000001', tpl), 1)
  t.equal(sim.credits('oUser-popup-000001', 'TplOther'), 0)
  await waitFor(() => popups.length === 2)
  t.same(popups[0].List, [{ TemplateId: tpl, SubscribeStatusString: 'accept', PopupScene: 0 }, { TemplateId: 'TplOther', SubscribeStatusString: 'reject', PopupScene: 0 }])
  t.equal(popups[0].ToUserName, 'gh_custom')

  // The same pop-up again in the same (frozen) second is a new event, not a retry: credits stack.
  await sim.popup(url, [{ openid: 'oUser-popup-000001', templateId: tpl, status: 'accept' }])
  await sim.popup(url, [{ openid: 'oUser-popup-000001', templateId: tpl, status: 'accept' }])
  await waitFor(() => popups.length === 4)
  t.equal(sim.credits('oUser-popup-000001', tpl), 3)
  t.ok(popups[3].CreateTime > popups[2].CreateTime)
  await app.wechat.send(shippedMessage('oUser-popup-000001'))
  t.equal(sim.credits('oUser-popup-000001', tpl), 2, 'a send used one credit')

  await t.rejects(sim.popup([]), TypeError)
  await t.rejects(sim.popup(url), TypeError, 'a URL but no items')
  await t.rejects(sim.popup([{ openid: 'o', templateId: 'T', status: 'ban' as never }]), TypeError)
  // wx.requestSubscribeMessage takes at most 3 templates: a pop-up of 4 for one user is not one WeChat shows
  const four = ['T1', 'T2', 'T3', 'T4'].map((templateId) => ({ openid: 'oFour', templateId, status: 'accept' as const }))
  await t.rejects(sim.popup(four), TypeError, 'at most 3 templates per user')
  t.equal(sim.credits('oFour', 'T1'), 0, 'nothing granted')
})

test('push and pushConfig refuse what they cannot do', async (t) => {
  const sim = await startSimulator(t)
  await t.rejects(sim.push(undefined, {}), TypeError)
  t.throws(() => sim.pushConfig({ url: 'http://127.0.0.1:1' } as never), TypeError)
  t.throws(() => sim.pushConfig(undefined as never), TypeError)
})

test('background pushes: an unreachable app is recorded as status 0 per attempt; close() aborts a hanging one', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim)
  sim.pushConfig({ url: `http://127.0.0.1:${await freePort()}`, token: TOKEN })
  await app.wechat.send(shippedMessage())
  await sim.pushesSettled()
  t.same(sim.pushes, [1, 2, 3].map((attempt) => ({ event: 'subscribe_msg_sent_event', statusCode: 0, body: '', attempt, error: 'connection' })))

  const sockets: Socket[] = []
  const silent = createServer((socket) => { sockets.push(socket) }) // accepts, never answers
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { sockets.forEach((s) => s.destroy()); silent.close() })
  sim.pushConfig({ url: `http://127.0.0.1:${(silent.address() as { port: number }).port}`, token: TOKEN })
  await app.wechat.send(shippedMessage())
  await waitFor(() => sockets.length === 1)
  const started = Date.now()
  await sim.close()
  t.ok(Date.now() - started < 4000, 'close did not wait for the hanging push (5 s timeout)')
  t.match(sim.pushes[3], { statusCode: 0, attempt: 1, error: 'closed' })
  t.equal(sim.pushes.length, 4, 'no retry after close')
})

/** A bare app that acknowledges every push and keeps its body, in arrival order. */
async function captureApp (t: Teardown): Promise<{ url: string, bodies: string[] }> {
  const bodies: string[] = []
  const server = createHttpServer((req, res) => {
    let body = ''
    req.on('data', (chunk: Buffer) => { body += chunk.toString() })
    req.on('end', () => { bodies.push(body); res.end('success') })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, bodies }
}

// JSON popup and sent events carried numbers ("PopupScene":0, "ErrorCode":0) and XML sent events a
// MsgID in CDATA, where WECHAT.md's examples (§7.1, §7.3) write strings in JSON and a bare MsgID in
// XML: an app's parser tested only against the simulator never met WeChat's form. Failed before.
test('popup and sent events are written as WECHAT.md\'s examples: numbers as strings in JSON, bare in XML', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  const { url, bodies } = await captureApp(t)
  const tpl = DEMO_TEMPLATE_IDS.orderShipped

  sim.pushConfig({ url, token: TOKEN, format: 'json' })
  await sim.popup([{ openid: 'oUser-forms-000001', templateId: tpl, status: 'accept' }])
  await app.wechat.send(shippedMessage('oUser-forms-000001'))
  await sim.pushesSettled()
  const [popupJson, sentJson] = bodies.splice(0).map((body) => JSON.parse(body) as { List: Record<string, unknown> })
  t.strictSame(popupJson.List, { TemplateId: tpl, SubscribeStatusString: 'accept', PopupScene: '0' })
  t.strictSame(sentJson.List, { TemplateId: tpl, MsgID: sim.accepted[0].msgid, ErrorCode: '0', ErrorStatus: 'success' })
  // and in the examples' order (FromUserName came after MsgType before)
  t.strictSame(Object.keys(popupJson), ['ToUserName', 'FromUserName', 'CreateTime', 'MsgType', 'Event', 'List'])
  t.strictSame(Object.keys(sentJson), ['ToUserName', 'FromUserName', 'CreateTime', 'MsgType', 'Event', 'List'])

  sim.pushConfig({ url, token: TOKEN, format: 'xml' })
  await sim.popup([{ openid: 'oUser-forms-000001', templateId: tpl, status: 'accept' }])
  await app.wechat.send(shippedMessage('oUser-forms-000001'))
  await sim.pushesSettled()
  const [popupXml, sentXml] = bodies.splice(0)
  t.match(popupXml, '<PopupScene>0</PopupScene>')
  t.match(popupXml, /^<xml><ToUserName>.*<\/ToUserName><FromUserName>.*<\/FromUserName><CreateTime>\d+<\/CreateTime><MsgType><!\[CDATA\[event\]\]><\/MsgType><Event>/)
  t.match(sentXml, `<MsgID>${sim.accepted[1].msgid}</MsgID><ErrorCode>0</ErrorCode><ErrorStatus><![CDATA[success]]></ErrorStatus>`)
})

// A sent event could go out before its own send was answered: request A (a -1 fault after 100 ms) and
// request B (same user and template, accepted, answered after 400 ms); A's connection closing claimed
// B's message by touser + template_id and pushed its sent event some 300 ms before B's answer. Failed before.
test('a sent event follows its own send\'s answer, never another request\'s', async (t) => {
  const sim = await startSimulator(t)
  const { url, bodies } = await captureApp(t)
  sim.pushConfig({ url, token: TOKEN, format: 'json' })
  const tokenRes = await request(`${sim.url}/cgi-bin/token?grant_type=client_credential&appid=${sim.appId}&secret=${sim.appSecret}`)
  const { access_token: token } = await tokenRes.body.json() as { access_token: string }
  const message = JSON.stringify({ touser: 'oUser-order-000001', template_id: DEMO_TEMPLATE_IDS.meetingReminder, data: { thing1: { value: '三楼' }, date2: { value: '2026年3月1日' } } })
  const seen: string[] = []
  const send = async (label: string): Promise<void> => {
    const res = await request(`${sim.url}/cgi-bin/message/subscribe/send?access_token=${token}`, { method: 'POST', body: message })
    seen.push(`${label} answered, pushes so far: ${bodies.length}`)
    await res.body.dump()
  }
  sim.failNext('send', { errcode: -1, delayMs: 100 })
  sim.failNext('send', { delayMs: 400 })
  const a = send('A')
  await new Promise((resolve) => setTimeout(resolve, 30)) // A takes the first fault
  await Promise.all([a, send('B')])
  await sim.pushesSettled()
  t.same(seen, ['A answered, pushes so far: 0', 'B answered, pushes so far: 0'], 'no sent event before B\'s answer')
  t.equal(sim.accepted.length, 1)
  t.same(bodies.map((body) => (JSON.parse(body) as { List: { MsgID: string } }).List.MsgID), [sim.accepted[0].msgid], 'then B\'s sent event, once')
})

// Sent events got increasing CreateTimes under the frozen clock (1 s apart per user and template), so
// an app deduping them by FromUserName + CreateTime + TemplateId alone passed against the simulator
// but drops real receipts: WeChat gives two sends in the same second the same CreateTime. Failed before.
test('sent events carry the clock\'s second as CreateTime, as WeChat\'s: alike but for MsgID; the plugin keeps them apart', async (t) => {
  const sim = await startSimulator(t)
  const { app, url } = await pushApp(t, sim, { listen: true })
  const sent: SentEvent[] = []
  app.wechat.on('subscribe_msg_sent_event', (event) => { sent.push(event) })
  sim.pushConfig({ url, token: TOKEN, encodingAESKey: KEY })
  const results = await Promise.all(Array.from({ length: 3 }, () => app.wechat.send(shippedMessage())))
  await sim.pushesSettled()
  await waitFor(() => sent.length === 3)
  const second = Math.floor(sim.clock.now() / 1000)
  t.same(sent.map((event) => event.CreateTime), [second, second, second], 'the same second for all three')
  t.same(new Set(sent.map((event) => event.List[0].MsgID)).size, 3, 'told apart by MsgID only')
  for (const { id } of results) await until(`${id} delivered`, async () => (await app.wechat.status(id))?.status === 'delivered')
  t.pass('each send delivered')
})
