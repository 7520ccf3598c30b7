import { test } from 'tap'
import { buildApp, shippedMessage, startSimulator } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { DEMO_TEMPLATE_IDS, DEMO_TEMPLATES } from '../lib/testing/index.js'

test('list: the account templates, typed, enum list included', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  const list = await app.wechat.templates.list()
  t.same(list.map((l) => l.priTmplId), DEMO_TEMPLATES.map((d) => d.priTmplId))
  const review = list.find((l) => l.priTmplId === DEMO_TEMPLATE_IDS.reviewResult)
  t.match(review, { title: '审核结果通知', type: 2, content: /\{\{enum_string2\.DATA\}\}/, keywordEnumValueList: [{ keywordCode: 'enum_string2.DATA', enumValueList: ['通过', '未通过', '待补充'] }] })
  t.type(review?.example, 'string')
  t.notOk('keywordEnumValueList' in (list[0] as object))

  list[0].title = 'changed by the caller'
  t.equal((await app.wechat.templates.list())[0].title, '订单发货通知', 'callers get copies')
  t.equal(sim.counters.gettemplate, 1, 'list() reads the cache')
  await app.wechat.templates.list({ refresh: true })
  t.equal(sim.counters.gettemplate, 2, 'refresh: true goes to WeChat')
})

test('categories, publicTitles (ids without quotes, start, limit), publicKeywords (tid in the query)', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  t.same(await app.wechat.templates.categories(), [{ id: 616, name: '公交' }, { id: 617, name: '网购' }, { id: 618, name: '在线教育' }])
  const titles = await app.wechat.templates.publicTitles({ ids: [616, 617] })
  t.equal(titles.count, 5)
  t.match(titles.data[0], { tid: 401, title: '乘车成功通知', type: 2, categoryId: '616' })
  const page = await app.wechat.templates.publicTitles({ ids: [616, 617], start: 1, limit: 2 })
  t.same(page.data.map((d) => d.tid), [402, 501])
  const keywords = await app.wechat.templates.publicKeywords(501)
  t.equal(keywords.count, 7)
  t.same(keywords.data[6], { kid: 7, name: '配送方式', example: '快递', rule: 'enum_string' })
  t.same((await app.wechat.templates.publicKeywords('401')).data.map((k) => k.rule), ['thing', 'time', 'thing', 'amount', 'phrase'])
})

test('argument validation: a bad argument is a 400 before any call', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  const { templates } = app.wechat
  const bad = async (call: Promise<unknown>, key: string, rule: RegExp | string): Promise<void> => {
    const err = await call.then(() => null, (e) => e)
    t.equal(err?.code, 'FST_WECHAT_INVALID_MESSAGE', `${key} refused`)
    t.equal(err?.statusCode, 400)
    t.match(err?.violations, [{ key, rule }])
  }
  await bad(templates.publicTitles({ ids: [616], limit: 31 }), 'limit', 'range')
  await bad(templates.publicTitles({ ids: [616], limit: 0 }), 'limit', 'range')
  await bad(templates.publicTitles({ ids: [616], start: -1 }), 'start', 'range')
  await bad(templates.publicTitles({ ids: [] }), 'ids', 'type')
  await bad(templates.publicTitles({ ids: ['616'] as never }), 'ids', 'type')
  await bad(templates.publicTitles(null as never), 'query', 'type')
  await bad(templates.publicKeywords(0), 'tid', 'type')
  await bad(templates.publicKeywords('12a'), 'tid', 'type')
  await bad(templates.add({ tid: 401, kidList: [1] }), 'kidList', 'size')
  await bad(templates.add({ tid: 401, kidList: [1, 2, 3, 4, 5, 6] }), 'kidList', 'size')
  await bad(templates.add({ tid: 401, kidList: [1, 1] }), 'kidList', 'unique')
  await bad(templates.add({ tid: 401, kidList: [1, 2.5] }), 'kidList', 'type')
  await bad(templates.add({ tid: 10000001, kidList: [1, 2] }), 'kidList', 'size')
  await bad(templates.add({ tid: 401, kidList: [1, 2], sceneDesc: '一二三四五六七八九十一二三四五六' }), 'sceneDesc', 'maxLength')
  await bad(templates.add({ tid: -4, kidList: [1, 2] }), 'tid', 'type')
  await bad(templates.add(undefined as never), 'template', 'type')
  await bad(templates.remove(''), 'priTmplId', 'required')
  await bad(templates.remove('has space'), 'priTmplId', 'required')
  // (audit: misspelt options were dropped silently, the call doing something else than asked)
  await bad(templates.add({ tid: 401, kidList: [1, 2], scenedesc: 'x' } as never), 'scenedesc', 'unknown')
  await bad(templates.publicTitles({ ids: [616], Limit: 1 } as never), 'Limit', 'unknown')
  await bad(templates.list({ fresh: true } as never), 'fresh', 'unknown')
  await bad(templates.list({ refresh: 1 } as never), 'refresh', 'type')
  await bad(templates.list('yes' as never), 'options', 'type')
  t.equal(sim.counters.gettemplate, 0, 'list() with a bad option did not load the list')
  const all = await templates.add({ tid: 'x' as never, kidList: [1], sceneDesc: 5 as never }).catch((e) => e)
  t.same(all.violations.map((v: { key: string }) => v.key), ['tid', 'kidList', 'sceneDesc'], 'every problem at once')
  t.equal(sim.counters.getpubtemplatetitles + sim.counters.getpubtemplatekeywords + sim.counters.addtemplate + sim.counters.deltemplate, 0)
})

test('add is form-encoded by default; at its limits; remove; the cache follows both', async (t) => {
  const sim = await startSimulator(t, { addTemplateEncoding: 'form' })
  const app = await buildApp(t, sim)
  const { priTmplId } = await app.wechat.templates.add({ tid: 501, kidList: [1, 2, 3, 6, 7], sceneDesc: '一二三四五六七八九十一二三四五' })
  t.equal(sim.counters.addtemplate, 1, 'form accepted at once')
  t.match(priTmplId, /^[\w-]{43}$/)
  const oneTime = await app.wechat.templates.add({ tid: 10000001 })
  t.ok(oneTime.priTmplId, 'a new one-time title takes no kidList')

  // the list was refreshed by add: a send to the new template is validated against it
  const msg = { toUser: 'oUser-test-openid-000001', templateId: priTmplId, data: { character_string1: 'SO1', thing2: '杯子', thing3: '顺丰', phrase6: '已发货', enum_string7: '同城配送' } }
  t.ok((await app.wechat.send(msg)).msgid)
  await t.rejects(app.wechat.send({ ...msg, data: { ...msg.data, enum_string7: '空运' } }), { code: 'FST_WECHAT_INVALID_MESSAGE' })
  const before = sim.counters.send

  await app.wechat.templates.remove(priTmplId)
  t.notOk(sim.templates().some((tpl) => tpl.priTmplId === priTmplId))
  t.notOk((await app.wechat.templates.list()).some((tpl) => tpl.priTmplId === priTmplId), 'the cache dropped it')
  await t.rejects(app.wechat.send(msg), { code: 'FST_WECHAT_INVALID_MESSAGE', violations: [{ key: 'templateId', rule: 'unknown_template' }] })
  t.equal(sim.counters.send, before)
  await t.rejects(app.wechat.templates.remove(priTmplId), { code: 'FST_WECHAT_API', errcode: 20002, statusCode: 502 })
})

test('add falls back to JSON when WeChat cannot read the form, once, and remembers it', async (t) => {
  const sim = await startSimulator(t, { addTemplateEncoding: 'json' })
  const logs = captureLogs('info')
  const app = await buildApp(t, sim, { logger: logs.logger })
  t.ok((await app.wechat.templates.add({ tid: 401, kidList: [1, 2] })).priTmplId)
  t.same(sim.requests.filter((r) => r.endpoint === 'addtemplate').map((r) => r.errcode), [47001, 0], 'form refused, JSON accepted')
  t.ok((await app.wechat.templates.add({ tid: 402, kidList: [2, 1] })).priTmplId)
  t.equal(sim.counters.addtemplate, 3, 'JSON first the next time')
  t.match(logs.parsed().find((l) => /body encoding/.test(String(l.msg))), { errcode: 47001, from: 'form', to: 'json' })
  sim.failNext('addtemplate', { errcode: 47001 })
  await t.rejects(app.wechat.templates.add({ tid: 601, kidList: [1, 2, 3] }), { code: 'FST_WECHAT_API', errcode: 47001 }, 'JSON refused (forced), form refused by this WeChat')
  t.equal(sim.counters.addtemplate, 5)
  t.match(logs.parsed().filter((l) => /body encoding/.test(String(l.msg))).at(-1), { from: 'json', to: 'form' })
})

test('add: a JSON-only WeChat that answers a parameter error to the form (no 47001) still gets JSON, once', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  // Such a server reads no tid from a form body: 200014, not 47001 (WECHAT.md §4.5 UNCERTAIN).
  sim.failNext('addtemplate', { errcode: 200014 })
  t.ok((await app.wechat.templates.add({ tid: 401, kidList: [1, 2] })).priTmplId)
  t.same(sim.requests.filter((r) => r.endpoint === 'addtemplate').map((r) => r.errcode), [200014, 0])
  t.ok((await app.wechat.templates.add({ tid: 402, kidList: [1, 2] })).priTmplId)
  t.equal(sim.counters.addtemplate, 3, 'JSON first from then on')
  // Once an encoding is known to work, a parameter error is WeChat's real verdict: one call.
  await t.rejects(app.wechat.templates.add({ tid: 999, kidList: [1, 2] }), { code: 'FST_WECHAT_API', errcode: 200014 })
  t.equal(sim.counters.addtemplate, 4)
})

test('add: a real parameter error before any add worked costs one extra call and is reported as such', async (t) => {
  const sim = await startSimulator(t, { addTemplateEncoding: 'form' })
  const app = await buildApp(t, sim)
  // form read → 200014; JSON unreadable for this server → 47001: the form's answer stands.
  await t.rejects(app.wechat.templates.add({ tid: 999, kidList: [1, 2] }), { code: 'FST_WECHAT_API', errcode: 200014 })
  t.same(sim.requests.filter((r) => r.endpoint === 'addtemplate').map((r) => r.errcode), [200014, 47001])
  t.ok((await app.wechat.templates.add({ tid: 401, kidList: [1, 2] })).priTmplId, 'form still first')
  t.equal(sim.counters.addtemplate, 3)
})

test('add: a format error on both encodings, and WeChat errcodes, are FST_WECHAT_API with errcode and rid', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  sim.failNext('addtemplate', { errcode: 47001 }, 2)
  await t.rejects(app.wechat.templates.add({ tid: 401, kidList: [1, 2] }), { code: 'FST_WECHAT_API', errcode: 47001, retryable: false })
  t.equal(sim.counters.addtemplate, 2, 'one fallback only')

  const err = await app.wechat.templates.add({ tid: 999, kidList: [1, 2] }).catch((e) => e)
  t.match(err, { code: 'FST_WECHAT_API', errcode: 200014, errorClass: 'permanent', retryable: false, statusCode: 502 })
  t.match(err.rid, /^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$/)
  t.match(err.message, /addtemplate: errcode 200014/)
  t.same(await app.wechat.templates.publicTitles({ ids: [999] }), { count: 0, data: [] }, 'an unknown category lists nothing')

  sim.failNext('getcategory', { errcode: 45011 })
  await t.rejects(app.wechat.templates.categories(), { code: 'FST_WECHAT_API', errcode: 45011, errorClass: 'rate', retryAfter: 60_000 })
  sim.failNext('deltemplate', { errcode: 45009 })
  await t.rejects(app.wechat.templates.remove('whatever'), { code: 'FST_WECHAT_API', errcode: 45009, errorClass: 'quota', retryable: true })
})

test('add: an answer without priTmplId is an error, not a silent success', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  sim.failNext('addtemplate', { errcode: 0 })
  await t.rejects(app.wechat.templates.add({ tid: 401, kidList: [1, 2] }), { code: 'FST_WECHAT_API', message: /no priTmplId/ })
})

test('same token and retry rules as send: 40001 refetches once, -1 and 5xx back off, a drop on add is not retried', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  await app.wechat.getToken()
  sim.invalidateTokens()
  t.equal((await app.wechat.templates.categories()).length, 3)
  t.equal(sim.counters.getcategory, 2, '40001 then the retry with a new token')
  t.equal(sim.tokenFetches().stable_token, 2)

  sim.failNext('getpubtemplatekeywords', { errcode: -1 }, 2)
  t.equal((await app.wechat.templates.publicKeywords(401)).count, 5)
  t.equal(sim.counters.getpubtemplatekeywords, 3)
  sim.failNext('gettemplate', { httpStatus: 502 }, 3)
  await t.rejects(app.wechat.templates.list({ refresh: true }), { code: 'FST_WECHAT_UPSTREAM' })
  t.equal(sim.counters.gettemplate, 3, 'retry.attempts calls')

  sim.failNext('getcategory', { errcode: -1 }, 3)
  await t.rejects(app.wechat.templates.categories(), { code: 'FST_WECHAT_API', errcode: -1, retryable: true })

  sim.failNext('addtemplate', { drop: true })
  await t.rejects(app.wechat.templates.add({ tid: 401, kidList: [1, 2] }), { code: 'FST_WECHAT_UPSTREAM' })
  t.equal(sim.counters.addtemplate, 1, 'it may have been created: not sent twice')
  sim.failNext('addtemplate', { errcode: -1 })
  t.ok((await app.wechat.templates.add({ tid: 401, kidList: [1, 2] })).priTmplId, '-1 is retried')
  t.equal(sim.counters.addtemplate, 3)
})

test('a failed refresh after add does not fail the add', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs('warn')
  const app = await buildApp(t, sim, { logger: logs.logger })
  await app.wechat.send(shippedMessage())
  sim.failNext('gettemplate', { errcode: 48001 })
  t.ok((await app.wechat.templates.add({ tid: 401, kidList: [1, 2] })).priTmplId)
  t.ok(logs.parsed().some((l) => /could not refresh the template list after a change/.test(String(l.msg))))
})

test('simulator: addTemplateEncoding is checked', async (t) => {
  await t.rejects(startSimulator(t, { addTemplateEncoding: 'xml' as never }), { name: 'TypeError', message: /addTemplateEncoding/ })
})

// Audit: a 45009 from a template endpoint carried no retryAfter, where send()'s does (README Errors).
test('a 45009 from a template endpoint carries retryAfter until the quota may reset, as a send\'s does', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { clock: sim.clock } })
  sim.failNext('getcategory', { errcode: 45009 })
  const err = await app.wechat.templates.categories().then(() => null, (e) => e)
  t.match(err, { code: 'FST_WECHAT_API', errcode: 45009, errorClass: 'quota' })
  t.type(err?.retryAfter, 'number')
  t.ok(err.retryAfter > 0 && err.retryAfter <= 86_400_000, `retryAfter ${err.retryAfter} ms: until a midnight`)
  sim.failNext('send', { errcode: 45009 })
  const sendErr = await app.wechat.send(shippedMessage()).then(() => null, (e) => e)
  t.equal(err.retryAfter, sendErr?.retryAfter, 'the same wait as a send\'s, by the same clock')
})
