import Fastify from 'fastify'
import { expectAssignable, expectError, expectType } from 'tsd'
import wechatPush, { defineTemplate } from '..'
import type { EnqueueResult, PrivateTemplate, SendResult, TemplateDefinition, TypedMessage, WechatTemplates } from '..'

const app = Fastify()

// the templates option
app.register(wechatPush, { appId: 'wx1', appSecret: 's', templates: { ttl: 3600, validate: true } })
app.register(wechatPush, { appId: 'wx1', appSecret: 's', templates: false })
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', templates: true }))
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', templates: { ttl: '1h' } }))

// defineTemplate
const shipped = defineTemplate('TPL_SHIPPED', { character_string1: 'character_string', thing2: 'thing' })
const review = defineTemplate('TPL_REVIEW', { thing1: 'thing', enum_string2: ['通过', '未通过'] })
expectType<string>(shipped.id)
expectAssignable<TemplateDefinition>(shipped)
expectType<'character_string'>(shipped.keys.character_string1)
expectError(defineTemplate('T', { thing2: 'time' })) // a key's type is its name's
expectError(defineTemplate('T', { thing2: 'stuff' })) // not a keyword type
expectError(defineTemplate('T', { thing2: ['a', 'b'] })) // only enum keys list values
expectError(defineTemplate(42, { thing1: 'thing' }))
expectType<TemplateDefinition<{ readonly enum3: 'enum' }>>(defineTemplate('T', { enum3: 'enum' }))

// typed messages: exactly the declared keys
const data = { character_string1: 'SO1', thing2: 'Mug' }
expectType<Promise<SendResult>>(app.wechat.send({ toUser: 'o', template: shipped, data }))
expectType<Promise<SendResult>>(app.wechat.send({ toUser: 'o', template: shipped, data: { character_string1: 42, thing2: { value: 'Mug' } }, page: 'p' }))
expectError(app.wechat.send({ toUser: 'o', template: shipped, data: { character_string1: 'SO1' } })) // missing key
expectError(app.wechat.send({ toUser: 'o', template: shipped, data: { character_string1: 'SO1', thing2: 'Mug', thing3: 'x' } })) // extra key
expectError(app.wechat.send({ toUser: 'o', template: shipped, data: { character_string1: 'SO1', thing3: 'Mug' } })) // wrong key
expectError(app.wechat.send({ toUser: 'o', template: shipped, data: { character_string1: 'SO1', thing2: true } })) // wrong value type
expectError(app.wechat.send({ toUser: 'o', template: shipped, templateId: 'x', data }))
expectError(app.wechat.send({ template: shipped, data }))

// the definition in templateId (issue #5: "in place of templateId"): exactly the declared keys
expectType<Promise<SendResult>>(app.wechat.send({ toUser: 'o', templateId: shipped, data }))
expectType<Promise<SendResult>>(app.wechat.send({ toUser: 'o', templateId: shipped, data: { character_string1: 'A1', thing2: 'x' } }))
expectType<Promise<SendResult>>(app.wechat.send({ toUser: 'o', templateId: shipped, data: { character_string1: 42, thing2: { value: 'Mug' } }, page: 'p', lang: 'en_US' }))
expectError(app.wechat.send({ toUser: 'o', templateId: shipped, data: { character_string1: 'SO1' } })) // missing key
expectError(app.wechat.send({ toUser: 'o', templateId: shipped, data: { character_string1: 'SO1', thing3: 'Mug' } })) // wrong key
expectError(app.wechat.send({ toUser: 'o', templateId: shipped, data: { character_string1: 'SO1', thing2: 'Mug', thing3: 'x' } })) // extra key
expectError(app.wechat.send({ toUser: 'o', templateId: shipped, data: { character_string1: 'SO1', thing2: true } })) // wrong value type
expectError(app.wechat.send({ toUser: 'o', templateId: shipped, data: {} }))
expectError(app.wechat.send({ templateId: shipped, data }))
expectError(app.wechat.send({ toUser: 'o', templateId: shipped, template: shipped, data })) // one or the other
expectError(app.wechat.send({ toUser: 'o', templateId: { id: 'TPL_SHIPPED' }, data })) // not a definition
expectType<Promise<SendResult>>(app.wechat.send({ toUser: 'o', templateId: review, data: { thing1: 'x', enum_string2: '通过' } }))
expectError(app.wechat.send({ toUser: 'o', templateId: review, data: { thing1: 'x', enum_string2: '拒绝' } }))
expectType<Promise<EnqueueResult[]>>(app.wechat.enqueue({ toUser: 'o', templateId: shipped, data }))
expectType<Promise<EnqueueResult[]>>(app.wechat.enqueue([{ toUser: 'o', templateId: shipped, data }, { toUser: 'p', templateId: shipped, data: { character_string1: 'A2', thing2: 'y' } }]))
expectError(app.wechat.enqueue({ toUser: 'o', templateId: shipped, data: { character_string1: 'SO1' } })) // missing key
expectError(app.wechat.enqueue([{ toUser: 'o', templateId: shipped, data: { character_string1: 'SO1', thing3: 'Mug' } }])) // wrong key
app.post('/ship-by-id', async (_request, reply) => {
  reply.wechatPush({ toUser: 'o', templateId: shipped, data })
  reply.wechatPush([{ toUser: 'o', templateId: review, data: { thing1: 'x', enum_string2: '未通过' } }])
  expectError(reply.wechatPush({ toUser: 'o', templateId: shipped, data: { character_string1: 'SO1' } })) // missing key
  expectError(reply.wechatPush({ toUser: 'o', templateId: shipped, data: { character_string1: 'SO1', thing3: 'Mug' } })) // wrong key
  return {}
})
const byId: TypedMessage<typeof shipped.keys> = { toUser: 'o', templateId: shipped, data }
expectType<Promise<SendResult>>(app.wechat.send(byId))
expectAssignable<TypedMessage<typeof shipped.keys>>({ toUser: 'o', templateId: shipped, data })
expectError<TypedMessage<typeof shipped.keys>>({ toUser: 'o', templateId: shipped, data: { thing2: 'Mug' } })

// enum keys take only their values
expectType<Promise<SendResult>>(app.wechat.send({ toUser: 'o', template: review, data: { thing1: 'x', enum_string2: '通过' } }))
expectType<Promise<SendResult>>(app.wechat.send({ toUser: 'o', template: review, data: { thing1: 'x', enum_string2: { value: '未通过' } } }))
expectError(app.wechat.send({ toUser: 'o', template: review, data: { thing1: 'x', enum_string2: '拒绝' } }))

// enqueue and reply.wechatPush
expectType<Promise<EnqueueResult[]>>(app.wechat.enqueue({ toUser: 'o', template: shipped, data }))
expectType<Promise<EnqueueResult[]>>(app.wechat.enqueue([{ toUser: 'o', template: shipped, data }, { toUser: 'p', template: shipped, data }]))
expectError(app.wechat.enqueue([{ toUser: 'o', template: shipped, data: { thing2: 'Mug' } }]))
app.post('/ship', async (_request, reply) => {
  reply.wechatPush({ toUser: 'o', template: shipped, data })
  reply.wechatPush([{ toUser: 'o', template: review, data: { thing1: 'x', enum_string2: '未通过' } }])
  expectError(reply.wechatPush({ toUser: 'o', template: shipped, data: { character_string1: 'SO1' } }))
  reply.wechatPush({ toUser: 'o', templateId: 't', data: { thing1: 'x' } }) // the untyped form still works
  return {}
})
const typed: TypedMessage<typeof shipped.keys> = { toUser: 'o', template: shipped, data }
expectType<Promise<SendResult>>(app.wechat.send(typed))

// untyped messages are unchanged
expectType<Promise<SendResult>>(app.wechat.send({ toUser: 'o', templateId: 't', data: { thing1: 'x', thing9: 'y' } }))

// the template API
expectType<WechatTemplates>(app.wechat.templates)
expectType<Promise<PrivateTemplate[]>>(app.wechat.templates.list())
expectType<Promise<PrivateTemplate[]>>(app.wechat.templates.list({ refresh: true }))
expectType<Promise<{ priTmplId: string }>>(app.wechat.templates.add({ tid: 401, kidList: [1, 2], sceneDesc: '发货' }))
expectType<Promise<void>>(app.wechat.templates.remove('id'))
expectError(app.wechat.templates.publicTitles({ start: 0, limit: 30 }))
expectError(app.wechat.templates.publicTitles({ ids: '616,617' }))
app.wechat.templates.publicTitles({ ids: [616], start: 0, limit: 30 }).then((titles) => { expectType<2 | 3>(titles.data[0].type) })
app.wechat.templates.publicKeywords(401).then((keywords) => { expectType<string>(keywords.data[0].rule) })
app.wechat.templates.categories().then((categories) => { expectType<number>(categories[0].id) })
expectType<typeof defineTemplate>(wechatPush.defineTemplate)

// From a types audit (each failed before): an enum that lists no value throws at run time, so it does
// not compile; readonly arrays are taken wherever an array of messages is.
expectError(defineTemplate('X', { enum_string1: [] }))
const readonlyShipped = defineTemplate('TPL_RO', { thing1: 'thing' })
const typedList: readonly TypedMessage<typeof readonlyShipped.keys>[] = [{ toUser: 'o', templateId: readonlyShipped, data: { thing1: 'x' } }]
expectType<Promise<EnqueueResult[]>>(app.wechat.enqueue(typedList))
