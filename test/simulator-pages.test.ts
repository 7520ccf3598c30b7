import { test } from 'tap'
import type { Test } from 'tap'
import { request } from 'undici'
import { createSimulator, DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import type { SimulatorOptions, WechatSimulator } from '../lib/testing/index.js'

const OPENID = 'oAbC1-xYz_exampleOpenid000'
const RID = /^invalid page,? rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$/

async function start (t: Test, options: SimulatorOptions = {}): Promise<{ sim: WechatSimulator, send: (page?: unknown) => Promise<{ errcode: number, errmsg: string }> }> {
  const sim = await createSimulator(options)
  t.teardown(() => sim.close())
  const res = await request(`${sim.url}/cgi-bin/stable_token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ grant_type: 'client_credential', appid: sim.appId, secret: sim.appSecret })
  })
  const { access_token: token } = await res.body.json() as { access_token: string }
  const send = async (page?: unknown) => {
    const answer = await request(`${sim.url}/cgi-bin/message/subscribe/send?access_token=${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ touser: OPENID, template_id: DEMO_TEMPLATE_IDS.meetingReminder, page, data: { thing1: { value: 'room' }, date2: { value: '2026年3月1日' } } })
    })
    return await answer.body.json() as { errcode: number, errmsg: string }
  }
  return { sim, send }
}

test('pages: a page not in the released version gets 41030 (WECHAT.md §2.1, §2.3); the query is not part of the path', async (t) => {
  const { sim, send } = await start(t, { pages: ['pages/index/index', 'pages/order/detail'] })
  t.equal((await send('pages/order/detail?id=8812')).errcode, 0)
  t.equal((await send('pages/index/index')).errcode, 0)
  t.equal((await send()).errcode, 0, 'no page: a card that opens nothing')
  const refused = await send('pages/not/exist?id=1')
  t.equal(refused.errcode, 41030)
  t.match(refused.errmsg, RID)
  t.equal((await send('pages/order')).errcode, 41030, 'a prefix is not the page')
  t.equal(sim.accepted.length, 3, 'a refused page is not accepted')
})

test('without pages any page is accepted (the default), and pages is checked', async (t) => {
  const { send } = await start(t)
  t.equal((await send('pages/whatever/you/like')).errcode, 0)
  await t.rejects(createSimulator({ pages: 'pages/index/index' as never }), TypeError)
  await t.rejects(createSimulator({ pages: ['pages/a?x=1'] }), TypeError, 'a page path has no query')
  await t.rejects(createSimulator({ pages: [''] }), TypeError)
})
