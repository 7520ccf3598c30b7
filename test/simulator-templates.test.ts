import { test } from 'tap'
import type { Test } from 'tap'
import { request } from 'undici'
import { CATEGORIES, createSimulator, DEMO_TEMPLATE_IDS, DEMO_TEMPLATES, LIBRARY, MAX_TEMPLATES } from '../lib/testing/index.js'
import type { WechatSimulator } from '../lib/testing/index.js'

interface Sim { sim: WechatSimulator, token: string }

async function start (t: Test, options?: Parameters<typeof createSimulator>[0]): Promise<Sim> {
  const sim = await createSimulator(options)
  t.teardown(() => sim.close())
  const res = await request(`${sim.url}/cgi-bin/token?grant_type=client_credential&appid=${sim.appId}&secret=${sim.appSecret}`)
  const { access_token: token } = await res.body.json() as { access_token: string }
  return { sim, token }
}

async function api ({ sim, token }: Sim, path: string, init: { method?: 'GET' | 'POST', body?: string, type?: string } = {}) {
  const sep = path.includes('?') ? '&' : '?'
  const res = await request(`${sim.url}/wxaapi/newtmpl/${path}${sep}access_token=${token}`, {
    method: init.method ?? 'GET',
    body: init.body,
    headers: init.type === undefined ? {} : { 'content-type': init.type }
  })
  return JSON.parse(await res.body.text())
}

const addForm = (s: Sim, body: string) => api(s, 'addtemplate', { method: 'POST', body, type: 'application/x-www-form-urlencoded' })
const addJson = (s: Sim, body: unknown) => api(s, 'addtemplate', { method: 'POST', body: JSON.stringify(body), type: 'application/json' })

test('gettemplate lists the account templates', async (t) => {
  const s = await start(t)
  const res = await api(s, 'gettemplate')
  t.equal(res.errcode, 0)
  t.equal(res.errmsg, 'ok')
  t.same(res.data, DEMO_TEMPLATES)
  t.notOk('keywordEnumValueList' in res.data[0])
  t.same(res.data[2].keywordEnumValueList, [{ keywordCode: 'enum_string2.DATA', enumValueList: ['通过', '未通过', '待补充'] }])
  t.equal(res.data[2].priTmplId, DEMO_TEMPLATE_IDS.reviewResult)
  // 43002, WECHAT.md's wrong-method code; the text names the method the endpoint needs.
  t.match(await api(s, 'gettemplate', { method: 'POST', body: '{}' }), { errcode: 43002, errmsg: /^require GET method,? rid: / })
})

test('gettemplate fills in a missing example', async (t) => {
  const s = await start(t, {
    templates: [{
      priTmplId: 'custom',
      title: '自定义',
      content: 'A:{{thing1.DATA}}\nB:{{enum3.DATA}}\nC:{{mystery4.DATA}}\nD:{{time2.DATA}}\n',
      type: 3,
      keywordEnumValueList: [{ keywordCode: 'enum3', enumValueList: ['甲', '乙'] }]
    }]
  })
  const [tpl] = (await api(s, 'gettemplate')).data
  t.equal(tpl.example, 'A:示例内容\nB:甲\nC:示例\nD:2026年3月1日 14:05\n')
})

test('getcategory', async (t) => {
  const s = await start(t)
  const res = await api(s, 'getcategory')
  t.same(res, { errcode: 0, errmsg: 'ok', data: CATEGORIES })
  t.same(res.data[0], { id: 616, name: '公交' })
})

test('getpubtemplatetitles: filtering, paging, string categoryId', async (t) => {
  const s = await start(t)
  const res = await api(s, 'getpubtemplatetitles?ids=616,617&start=0&limit=30')
  t.equal(res.errcode, 0)
  t.equal(res.count, LIBRARY.filter((x) => x.categoryId !== 618).length)
  t.same(res.data[0], { tid: 401, title: '乘车成功通知', type: 2, categoryId: '616' })
  const page = await api(s, 'getpubtemplatetitles?ids=616,617&start=1&limit=2')
  t.equal(page.count, res.count)
  t.same(page.data.map((x: { tid: number }) => x.tid), [402, 501])
  t.same(await api(s, 'getpubtemplatetitles?ids=999&start=0&limit=5'), { errcode: 0, errmsg: 'ok', count: 0, data: [] })
})

test('getpubtemplatetitles: parameter errors', async (t) => {
  const s = await start(t)
  const cases: Array<[string, number]> = [
    ['start=0&limit=10', 200018],
    ['ids=&start=0&limit=10', 200018],
    ['ids="616,617"&start=0&limit=10', 200019],
    ['ids=616,abc&start=0&limit=10', 200019],
    ['ids=616,&start=0&limit=10', 200019],
    ['ids=616&limit=10', 200016],
    ['ids=616&start=-1&limit=10', 200016],
    ['ids=616&start=0', 200017],
    ['ids=616&start=0&limit=31', 200017],
    ['ids=616&start=0&limit=0', 200017],
    ['ids=616&start=0&limit=x', 200017]
  ]
  for (const [query, errcode] of cases) {
    t.equal((await api(s, `getpubtemplatetitles?${query}`)).errcode, errcode, query)
  }
})

test('getpubtemplatekeywords', async (t) => {
  const s = await start(t)
  const res = await api(s, 'getpubtemplatekeywords?tid=401')
  t.equal(res.errcode, 0)
  t.equal(res.count, 5)
  t.same(res.data[0], { kid: 1, name: '线路名称', example: '15路', rule: 'thing' })
  for (const query of ['tid=999', 'tid=abc', '']) {
    t.equal((await api(s, `getpubtemplatekeywords?${query}`)).errcode, 200014, query)
  }
})

test('addtemplate (form), then gettemplate and send use it', async (t) => {
  const s = await start(t)
  const added = await addForm(s, `tid=401&kidList=2&kidList=1&sceneDesc=${encodeURIComponent('乘车后通知')}`)
  t.equal(added.errcode, 0)
  t.match(added.priTmplId, /^[A-Za-z0-9_-]{43}$/)
  const tpl = (await api(s, 'gettemplate')).data.find((x: { priTmplId: string }) => x.priTmplId === added.priTmplId)
  t.same(tpl, {
    priTmplId: added.priTmplId,
    title: '乘车成功通知',
    content: '乘车时间:{{time2.DATA}}\n线路名称:{{thing1.DATA}}\n',
    example: '乘车时间:2026年3月1日 08:15\n线路名称:15路\n',
    type: 2
  })
  const res = await request(`${s.sim.url}/cgi-bin/message/subscribe/send?access_token=${s.token}`, {
    method: 'POST',
    body: JSON.stringify({ touser: 'user-000001', template_id: added.priTmplId, data: { thing1: { value: '15路' }, time2: { value: '08:15' } } })
  })
  t.match(await res.body.text(), /^\{"errcode":0,"errmsg":"ok","msgid":\d{19}\}$/)
  t.equal((await addForm(s, 'tid=401&kidList[]=3&kidList[]=4')).errcode, 0, 'kidList[] form')
})

test('addtemplate (JSON) with an enum keyword', async (t) => {
  const s = await start(t)
  const added = await addJson(s, { tid: '501', kidList: [7, 1], sceneDesc: '发货后通知' })
  t.equal(added.errcode, 0)
  const tpl = s.sim.templates().find((x) => x.priTmplId === added.priTmplId)
  t.equal(tpl?.content, '配送方式:{{enum_string7.DATA}}\n订单号:{{character_string1.DATA}}\n')
  t.same(tpl?.keywordEnumValueList, [{ keywordCode: 'enum_string7.DATA', enumValueList: ['快递', '自提', '同城配送'] }])
  t.equal((await addJson(s, { tid: 502, kidList: ['1', '2'] })).errcode, 0, 'numeric tid and string kids')
})

test('addtemplate: new one-time titles take an empty kidList', async (t) => {
  const s = await start(t)
  const form = await addForm(s, 'tid=10000001')
  t.equal(form.errcode, 0)
  t.equal(s.sim.templates().find((x) => x.priTmplId === form.priTmplId)?.content,
    '商品:{{thing1.DATA}}\n金额:{{amount2.DATA}}\n支付时间:{{time3.DATA}}\n')
  t.equal((await addJson(s, { tid: '10000001', kidList: [] })).errcode, 0)
  t.equal((await addJson(s, { tid: '10000001' })).errcode, 0)
  t.equal((await addJson(s, { tid: '10000001', kidList: [1, 2] })).errcode, 200020)
})

test('addtemplate: errors', async (t) => {
  const s = await start(t)
  const cases: Array<[unknown, number]> = [
    [{ kidList: [1, 2] }, 200014],
    [{ tid: '999', kidList: [1, 2] }, 200014],
    [{ tid: true, kidList: [1, 2] }, 200014],
    [{ tid: '401', kidList: [1] }, 200020],
    [{ tid: '401', kidList: [1, 2, 3, 4, 5, 1] }, 200020],
    [{ tid: '401', kidList: [1, 1] }, 200020],
    [{ tid: '401', kidList: [1, 9] }, 200020],
    [{ tid: '401', kidList: '1,2' }, 200020],
    [{ tid: '401' }, 200020],
    [{ tid: '401', kidList: [1, 2], sceneDesc: '一二三四五六七八九十一二三四五六' }, 200021],
    [{ tid: '401', kidList: [1, 2], sceneDesc: 5 }, 200021]
  ]
  for (const [body, errcode] of cases) {
    t.equal((await addJson(s, body)).errcode, errcode, JSON.stringify(body))
  }
  t.equal((await addJson(s, { tid: '401', kidList: [1, 2], sceneDesc: '一二三四五六七八九十一二三四五' })).errcode, 0, '15 characters')
  t.equal((await api(s, 'addtemplate', { method: 'POST' })).errcode, 44002)
  t.equal((await api(s, 'addtemplate', { method: 'POST', body: 'tid=401', type: 'text/plain' })).errcode, 47001)
  t.match(await api(s, 'addtemplate'), { errcode: 43002, errmsg: /^require POST method,? rid: / })
  t.equal(s.sim.templates().length, DEMO_TEMPLATES.length + 1)
})

test(`addtemplate: at most ${MAX_TEMPLATES} templates`, async (t) => {
  const s = await start(t)
  while (s.sim.templates().length < MAX_TEMPLATES) t.equal((await addForm(s, 'tid=401&kidList=1&kidList=2')).errcode, 0)
  t.equal((await addForm(s, 'tid=401&kidList=1&kidList=2')).errcode, 200012)
})

test('deltemplate', async (t) => {
  const s = await start(t)
  const del = (body: string, type = 'application/json') => api(s, 'deltemplate', { method: 'POST', body, type })
  t.same(await del(JSON.stringify({ priTmplId: DEMO_TEMPLATE_IDS.orderShipped })), { errcode: 0, errmsg: 'ok' })
  t.notOk(s.sim.templates().some((x) => x.priTmplId === DEMO_TEMPLATE_IDS.orderShipped))
  t.equal((await del(JSON.stringify({ priTmplId: DEMO_TEMPLATE_IDS.orderShipped }))).errcode, 20002)
  t.equal((await del(JSON.stringify({}))).errcode, 20002)
  t.equal((await del(`priTmplId=${DEMO_TEMPLATE_IDS.allTypes}`, 'application/x-www-form-urlencoded')).errcode, 0)
  t.equal((await del('{')).errcode, 47001)
  t.equal((await api(s, 'deltemplate', { method: 'POST' })).errcode, 44002)
})

test('template endpoints need a valid token', async (t) => {
  const s = await start(t)
  const bad = { sim: s.sim, token: 'bogus' }
  for (const path of ['gettemplate', 'getcategory', 'getpubtemplatetitles?ids=616&start=0&limit=1', 'getpubtemplatekeywords?tid=401']) {
    t.equal((await api(bad, path)).errcode, 40014, path)
  }
  t.equal((await addForm(bad, 'tid=401&kidList=1&kidList=2')).errcode, 40014)
  t.equal((await api(bad, 'deltemplate', { method: 'POST', body: '{}' })).errcode, 40014)
})
