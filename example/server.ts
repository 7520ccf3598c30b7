/**
 * The example app. With no credentials it runs on embedded defaults: the built-in WeChat simulator
 * and the memory store, so `npm run example` works on a fresh machine, and every part of the plugin
 * is on: a direct send, a push from a route handler (queued), WeChat's pushes (the simulator sends a
 * delivery receipt for each message) and the protected routes with the status page. With
 * WECHAT_APPID and WECHAT_SECRET (and optionally REDIS_URL) it talks to the real WeChat: set
 * WECHAT_TEMPLATE_ID to a template of yours with the keywords the routes send (or change `data`),
 * WECHAT_ADMIN_TOKEN to turn the routes on, and WECHAT_PUSH_TOKEN / WECHAT_AES_KEY (the console's
 * push settings) to turn the push endpoint on.
 *
 *   npm run example
 *   curl -X POST localhost:3000/orders/42/ship -H 'content-type: application/json' -d '{}'
 *   curl -X POST localhost:3000/orders/42/pay -H 'content-type: application/json' -d '{}'
 *   curl localhost:3000/wechat/stats -H 'authorization: Bearer example-admin-token'
 *   open http://localhost:3000/wechat/dashboard?token=example-admin-token
 */
import { timingSafeEqual } from 'node:crypto'
import Fastify from 'fastify'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fastifyRedis from '@fastify/redis'
import wechatPush from '../lib/index.js'
import type { SubscribeMessage } from '../lib/index.js'
import { createSimulator, DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import type { WechatSimulator } from '../lib/testing/index.js'

const SHIPPED = process.env.WECHAT_TEMPLATE_ID || DEMO_TEMPLATE_IDS.orderShipped
/** Only for the simulator on this machine: with the real WeChat, set your own (or leave the routes off). */
const SIMULATOR_ADMIN_TOKEN = 'example-admin-token'
const SIMULATOR_PUSH_TOKEN = 'exampleToken'
const SIMULATOR_AES_KEY = 'ExampleOnlyKey0123456789abcdefghijklmnopqrs'

async function main (): Promise<void> {
  const app = Fastify({
    logger: {
      level: process.env.LOG_LEVEL ?? 'info',
      // (the dashboard's link carries the admin token: keep it out of the request log)
      serializers: { req: (request) => ({ method: request.method, url: String(request.url).replace(/([?&]token=)[^&]*/g, '$1[redacted]') }) }
    }
  })
  const real = Boolean(process.env.WECHAT_APPID && process.env.WECHAT_SECRET)
  // (on the wall clock: the simulator's pushes must carry the time the push endpoint checks them against)
  const simulator = real ? null : await createSimulator({ clock: { now: Date.now } })
  if (simulator) app.log.info({ url: simulator.url }, 'no WECHAT_APPID/WECHAT_SECRET: using the built-in WeChat simulator')
  app.addHook('onClose', async () => { await simulator?.close() })
  try {
    await start(app, simulator)
  } catch (err) {
    await app.close().catch(() => {})
    await simulator?.close()
    throw err
  }
}

async function start (app: FastifyInstance, simulator: WechatSimulator | null): Promise<void> {
  const adminToken = process.env.WECHAT_ADMIN_TOKEN || (simulator ? SIMULATOR_ADMIN_TOKEN : '')
  const pushToken = process.env.WECHAT_PUSH_TOKEN || (simulator ? SIMULATOR_PUSH_TOKEN : '')
  const aesKey = process.env.WECHAT_AES_KEY || (simulator ? SIMULATOR_AES_KEY : undefined)

  if (process.env.REDIS_URL) await app.register(fastifyRedis, { url: process.env.REDIS_URL })
  await app.register(wechatPush, {
    appId: simulator?.appId ?? String(process.env.WECHAT_APPID),
    appSecret: simulator?.appSecret ?? String(process.env.WECHAT_SECRET),
    ...(simulator ? { baseUrl: simulator.url } : {}),
    // The routes and the status page, behind a bearer token (the dashboard also takes it as ?token=).
    routes: adminToken ? { onRequest: bearer(adminToken) } : false,
    // WeChat's pushes (delivery receipts, subscribe pop-ups) at POST /wechat/push.
    push: pushToken ? { token: pushToken, encodingAESKey: aesKey } : false
  })

  // Lifecycle events: where alerts go. A token error that is not retryable (a wrong secret, an IP
  // not on the whitelist) stops every send until someone fixes it.
  app.wechat.on('message:failed', (event) => { app.log.warn({ messageId: event.id, errcode: event.errcode, errmsg: event.errmsg }, 'subscribe message failed') })
  app.wechat.on('message:delivered', (event) => { app.log.info({ messageId: event.id }, 'subscribe message delivered (receipt)') })
  app.wechat.on('token:error', (event) => { if (!event.retryable) app.log.error({ errcode: event.errcode }, `WeChat token: ${event.message}`) })

  // A direct send: the answer waits for WeChat's.
  app.post<{ Params: { id: string }, Body: { openid?: string } | null }>('/orders/:id/ship', async (request) => {
    const result = await app.wechat.send(orderMessage(request.params.id, request.body?.openid, '已发货'))
    request.log.info({ result }, 'subscribe message sent')
    return result
  })

  // A push from a handler: queued once the response went out with a status < 400, never delaying it.
  app.post<{ Params: { id: string }, Body: { openid?: string } | null }>('/orders/:id/pay', async (request, reply) => {
    reply.wechatPush(orderMessage(request.params.id, request.body?.openid, '已付款'))
    return { order: request.params.id, paid: true }
  })

  const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' })
  // The simulator pushes a receipt (subscribe_msg_sent_event) for every message it accepts, as WeChat does.
  if (simulator && pushToken) simulator.pushConfig({ url: address, token: pushToken, encodingAESKey: aesKey })

  // Show it working: one order shipped (sent now) and one paid (queued from the handler), both through
  // our own routes; then, once the simulator's receipts are in, the shipped message's record.
  const shipped = await app.inject({ method: 'POST', url: '/orders/20260301/ship', payload: { openid: 'oExample-openid-0001' } })
  app.log.info({ statusCode: shipped.statusCode, body: shipped.json() }, 'demo: order shipped (sent now)')
  const paid = await app.inject({ method: 'POST', url: '/orders/20260302/pay', payload: { openid: 'oExample-openid-0001' } })
  app.log.info({ statusCode: paid.statusCode, body: paid.json() }, 'demo: order paid (its push is queued)')
  if (simulator && adminToken && shipped.statusCode === 200) {
    await receiptOf(app, String(shipped.json().id))
    const record = await app.inject({ url: `/wechat/messages/${String(shipped.json().id)}`, headers: { authorization: `Bearer ${adminToken}` } })
    app.log.info({ statusCode: record.statusCode, body: record.json() }, 'demo: the shipped message\'s record')
    app.log.info(`try: curl -X POST ${address}/orders/42/ship -H 'content-type: application/json' -d '{}'; status page: ${address}/wechat/dashboard?token=${adminToken}`)
  }
  if (process.env.EXAMPLE_EXIT_AFTER_DEMO) await app.close()
}

/** Waits (at most 5 s) until the message's receipt came in: the simulator pushes it right after its answer. */
async function receiptOf (app: FastifyInstance, id: string): Promise<void> {
  for (let waited = 0; waited < 5000; waited += 50) {
    if ((await app.wechat.status(id))?.status === 'delivered') return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function orderMessage (orderId: string, openid = 'oExample-openid-0001', state: string): SubscribeMessage {
  return {
    toUser: openid,
    templateId: SHIPPED,
    page: `pages/order?id=${encodeURIComponent(orderId)}`,
    data: {
      character_string1: `SO${orderId}`.slice(0, 32),
      thing2: 'Blue ceramic mug x2',
      amount3: '¥58.00',
      time4: new Date().toISOString().slice(0, 16).replace('T', ' '),
      phrase5: state
    }
  }
}

/** An onRequest hook: `Authorization: Bearer <token>`, or `?token=` for opening the dashboard from a link. */
function bearer (token: string): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const expected = Buffer.from(token)
  const same = (value: string): boolean => { const given = Buffer.from(value); return given.length === expected.length && timingSafeEqual(given, expected) }
  return async (request, reply) => {
    const header = request.headers.authorization ?? ''
    const query = (request.query as { token?: unknown }).token
    if (same(header.replace(/^Bearer /, '')) || (typeof query === 'string' && same(query))) return
    await reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'a valid token is required' })
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
