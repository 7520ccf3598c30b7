import { test } from 'tap'
import { buildApp, startSimulator } from './helpers/app.js'
import { defineTemplate } from '../lib/typed-templates.js'
import { DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import type { WechatSimulator } from '../lib/testing/index.js'

// Issue #5: a defineTemplate() value goes where a template id goes, `templateId`
// (`template` stays an alias). Its id is sent; its declared keys validate the data.

const TPL = 'Typed-TemplateId-Shipped-0000000000000001'
const shipped = defineTemplate(TPL, { character_string1: 'character_string', thing2: 'thing' })
const review = defineTemplate(DEMO_TEMPLATE_IDS.reviewResult, { thing1: 'thing', enum_string2: ['通过', '未通过', '待补充'] })
const USER = 'oUser-typed-id-000001'

async function simulator (t: Parameters<typeof startSimulator>[0]): Promise<WechatSimulator> {
  const sim = await startSimulator(t)
  sim.addTemplate({ priTmplId: TPL, title: '发货通知', content: '订单号:{{character_string1.DATA}}\n商品:{{thing2.DATA}}\n', example: '', type: 3 })
  return sim
}

async function until (done: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
}

for (const templates of [undefined, false] as const) {
  const known = templates === undefined ? 'the account list known' : 'templates: false (declared keys only)'

  test(`send and enqueue take { templateId: defineTemplate(...) } (${known})`, async (t) => {
    const sim = await simulator(t)
    const app = await buildApp(t, sim, { plugin: templates === undefined ? {} : { templates } })
    const sent = await app.wechat.send({ toUser: USER, templateId: shipped, data: { character_string1: 'A1', thing2: 'x' } })
    t.ok(sent.msgid)
    t.equal(sim.accepted.length, 1)
    t.equal(sim.accepted[0]?.template_id, TPL, 'the definition\'s id goes out as template_id')
    t.same(sim.accepted[0]?.data, { character_string1: { value: 'A1' }, thing2: { value: 'x' } })
    t.equal((await app.wechat.status(sent.id))?.templateId, TPL)

    const queued = [
      ...await app.wechat.enqueue([{ toUser: 'oUser-typed-id-000002', templateId: shipped, data: { character_string1: 'A2', thing2: { value: 'y' } } }]),
      ...await app.wechat.enqueue({ toUser: 'oUser-typed-id-000003', templateId: review, data: { thing1: '实名认证', enum_string2: '通过' } })
    ]
    t.equal(queued.length, 2)
    t.equal((await app.wechat.status(queued[0]!.id))?.templateId, TPL)
    t.equal((await app.wechat.status(queued[1]!.id))?.templateId, DEMO_TEMPLATE_IDS.reviewResult)
    await until(() => sim.accepted.length >= 3)
    const byUser = new Map(sim.accepted.map((m) => [m.touser, m]))
    t.equal(byUser.get('oUser-typed-id-000002')?.template_id, TPL)
    t.same(byUser.get('oUser-typed-id-000002')?.data, { character_string1: { value: 'A2' }, thing2: { value: 'y' } })
    t.equal(byUser.get('oUser-typed-id-000003')?.template_id, DEMO_TEMPLATE_IDS.reviewResult)
    t.same(byUser.get('oUser-typed-id-000003')?.data, { thing1: { value: '实名认证' }, enum_string2: { value: '通过' } })
  })

  test(`a wrong, missing or extra data key is refused locally, before any call (${known})`, async (t) => {
    const sim = await simulator(t)
    const app = await buildApp(t, sim, { plugin: templates === undefined ? {} : { templates } })
    const before = sim.counters.send

    await t.rejects(app.wechat.send({ toUser: USER, templateId: shipped, data: { character_string1: 'A1', thing3: 'x' } as never }), {
      code: 'FST_WECHAT_INVALID_MESSAGE',
      violations: [{ key: 'data.thing3', rule: 'unknown_key' }, { key: 'data.thing2', rule: 'missing' }]
    })
    await t.rejects(app.wechat.send({ toUser: USER, templateId: shipped, data: { character_string1: 'A1' } as never }), {
      code: 'FST_WECHAT_INVALID_MESSAGE',
      violations: [{ key: 'data.thing2', rule: 'missing' }]
    })
    await t.rejects(app.wechat.send({ toUser: USER, templateId: shipped, data: { character_string1: 'A1', thing2: 'x', thing4: 'y' } as never }), {
      code: 'FST_WECHAT_INVALID_MESSAGE',
      violations: [{ key: 'data.thing4', rule: 'unknown_key' }]
    })
    await t.rejects(app.wechat.send({ toUser: USER, templateId: review, data: { thing1: 'x', enum_string2: '拒绝' as never } }), {
      code: 'FST_WECHAT_INVALID_MESSAGE',
      violations: [{ key: 'data.enum_string2', rule: 'enum_string.notAllowed' }]
    })
    await t.rejects(app.wechat.enqueue([{ toUser: USER, templateId: shipped, data: { character_string1: 'A1', thing3: 'x' } as never }]), {
      code: 'FST_WECHAT_INVALID_MESSAGE',
      violations: [{ key: 'data.thing3', rule: 'unknown_key' }, { key: 'data.thing2', rule: 'missing' }]
    })
    await new Promise((resolve) => setTimeout(resolve, 50))
    t.equal(sim.counters.send, before, 'no subscribe/send call was made')
    t.equal(sim.accepted.length, 0)
  })
}

test('template stays an alias; both given must name one template', async (t) => {
  const sim = await simulator(t)
  const app = await buildApp(t, sim)
  const data = { character_string1: 'A1', thing2: 'x' }
  t.ok((await app.wechat.send({ toUser: USER, template: shipped, data })).msgid, 'template: still works')
  t.ok((await app.wechat.send({ toUser: USER, templateId: shipped, template: shipped, data } as never)).msgid, 'both, the same definition')
  t.ok((await app.wechat.send({ toUser: USER, templateId: TPL, template: shipped, data } as never)).msgid, 'the id string and its definition')
  const before = sim.counters.send
  await t.rejects(app.wechat.send({ toUser: USER, templateId: review, template: shipped, data } as never), {
    code: 'FST_WECHAT_INVALID_MESSAGE',
    violations: [{ key: 'templateId', rule: 'conflict' }]
  })
  await t.rejects(app.wechat.send({ toUser: USER, templateId: 'Other', template: shipped, data } as never), {
    code: 'FST_WECHAT_INVALID_MESSAGE',
    violations: [{ key: 'templateId', rule: 'conflict' }]
  })
  t.equal(sim.counters.send, before)
  t.same(sim.accepted.map((m) => m.template_id), [TPL, TPL, TPL])
})

test('an object templateId that is not a defineTemplate() value is refused with a clear message', async (t) => {
  const sim = await simulator(t)
  const app = await buildApp(t, sim)
  const data = { character_string1: 'A1', thing2: 'x' }
  for (const templateId of [{}, { id: 5, keys: {} }, { id: TPL }, [TPL], null]) {
    const err = await app.wechat.send({ toUser: USER, templateId, data } as never).catch((e: unknown) => e) as { code?: string, violations?: { key: string, rule: string, message: string }[] }
    t.equal(err.code, 'FST_WECHAT_INVALID_MESSAGE', JSON.stringify(templateId))
    t.match(err.violations, [{ key: 'templateId', rule: 'required', message: /templateId must be a non-empty string or a defineTemplate\(\) value/ }])
  }
  // a hand-made definition whose declared types disagree with its key names (and not on the account)
  await t.rejects(app.wechat.send({ toUser: USER, templateId: { id: 'T-broken', keys: { thing2: 'time' } }, data: { thing2: 'x' } } as never), {
    code: 'FST_WECHAT_INVALID_MESSAGE',
    violations: [{ key: 'templateId', rule: 'unknown_template' }, { key: 'templateId', rule: 'spec', message: /thing2 is of type thing by its name, not time/ }]
  })
  // a definition of a template the account does not have: WeChat's 40037, locally
  const missing = defineTemplate('Typed-TemplateId-NotOnTheAccount-00000009', { thing1: 'thing' })
  await t.rejects(app.wechat.send({ toUser: USER, templateId: missing, data: { thing1: 'x' } }), {
    code: 'FST_WECHAT_INVALID_MESSAGE',
    violations: [{ key: 'templateId', rule: 'unknown_template' }]
  })
  t.equal(sim.counters.send, 0)
})

test('reply.wechatPush and config.wechatPush take { templateId: defineTemplate(...) }', async (t) => {
  const sim = await simulator(t)
  const app = await buildApp(t, sim, {
    setup (app) {
      app.post('/ship', async (_request, reply) => {
        reply.wechatPush({ toUser: 'oUser-typed-id-000004', templateId: shipped, data: { character_string1: 'R1', thing2: 'reply' } })
        return { ok: true }
      })
      app.post('/declared', {
        config: { wechatPush: () => ({ toUser: 'oUser-typed-id-000005', templateId: shipped, data: { character_string1: 'C1', thing2: 'config' } }) as never }
      }, async () => ({ ok: true }))
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/ship' })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/declared' })).statusCode, 200)
  await until(() => sim.accepted.length >= 2)
  const byUser = new Map(sim.accepted.map((m) => [m.touser, m]))
  t.equal(byUser.get('oUser-typed-id-000004')?.template_id, TPL)
  t.same(byUser.get('oUser-typed-id-000004')?.data, { character_string1: { value: 'R1' }, thing2: { value: 'reply' } })
  t.equal(byUser.get('oUser-typed-id-000005')?.template_id, TPL)
  t.same(byUser.get('oUser-typed-id-000005')?.data, { character_string1: { value: 'C1' }, thing2: { value: 'config' } })
})
