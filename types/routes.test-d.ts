import Fastify from 'fastify'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { expectError, expectType } from 'tsd'
import wechatPush from '..'
import type { FastifyWechatPushOptions, OnRequestHook, PreHandlerHook, SubscribeMessage, WechatPushConfig } from '..'

const app = Fastify()

// routes.onRequest / routes.preHandler are Fastify hooks: parameters typed from context (no implicit any)
app.register(wechatPush, {
  appId: 'wx1',
  appSecret: 's',
  routes: {
    onRequest: async (request, reply) => {
      expectType<FastifyRequest>(request)
      expectType<FastifyReply>(reply)
      if (request.headers.authorization === undefined) return reply.code(401).send({ message: 'no' })
    }
  }
})
app.register(wechatPush, {
  appId: 'wx1',
  appSecret: 's',
  routes: {
    onRequest: [(request, _reply, done) => { expectType<string>(request.url); done() }],
    preHandler: [async (request) => { expectType<string>(request.method) }, function (_request, _reply, done) { expectType<string>(this.prefix); done() }]
  }
})
declare const auth: OnRequestHook
declare const check: PreHandlerHook
app.register(wechatPush, { appId: 'wx1', appSecret: 's', routes: { onRequest: auth, preHandler: [check] } })
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', routes: { onRequest: 1 } }))
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', routes: { onRequest: 'auth' } }))
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', routes: { preHandler: (request: string) => request } }))
type Routes = Exclude<NonNullable<FastifyWechatPushOptions['routes']>, false>
expectError<Routes['onRequest']>(1)

// push.token is a string (process.env values need a check or `!`)
declare const env: string | undefined
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', push: { token: env } }))
app.register(wechatPush, { appId: 'wx1', appSecret: 's', push: { token: env! } })

// clock is an object with now(), not Date.now
app.register(wechatPush, { appId: 'wx1', appSecret: 's', clock: { now: Date.now } })
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', clock: Date.now }))

// config.wechatPush: the payload is unknown unless its parameter (or the function) says what the handler returns
interface Order { id: string, openid: string, total: string }
const message = (order: Order): SubscribeMessage => ({ toUser: order.openid, templateId: 'PAID', data: { amount1: order.total } })
app.post('/a', { config: { wechatPush: (_request, _reply, order: Order) => message(order) } }, async (): Promise<Order> => ({ id: '1', openid: 'o', total: '1' }))
const typed: WechatPushConfig<Order> = (_request, _reply, order) => { expectType<Order>(order); return message(order) }
app.post('/b', { config: { wechatPush: typed } }, async () => ({ id: '1', openid: 'o', total: '1' }))
app.post('/c', { config: { wechatPush: (_request, _reply, payload) => { expectType<unknown>(payload); return null } } }, async () => 'ok')
app.post('/d', { config: { wechatPush: async (_request, _reply, order: Order) => [message(order)] } }, async () => 'ok')
expectError(app.post('/e', { config: { wechatPush: (_request, _reply, payload) => ({ toUser: payload.openid, templateId: 't', data: {} }) } }, async () => 'ok'))
expectError(app.post('/f', { config: { wechatPush: (_request, _reply, _order: Order) => ({ toUser: 'o' }) } }, async () => 'ok'))

// route generics type request.params (README snippets)
app.post<{ Params: { id: string } }>('/orders/:id/ship', async (request) => {
  expectType<string>(request.params.id)
  return 'ok'
})
