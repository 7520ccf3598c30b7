/**
 * The example app. With no credentials it runs on embedded defaults: the built-in WeChat simulator
 * and the memory store, so `npm run example` works on a fresh machine. With WECHAT_APPID and
 * WECHAT_SECRET (and optionally REDIS_URL) it talks to the real WeChat: set WECHAT_TEMPLATE_ID to a
 * template of yours with the keywords the route sends (or change its `data`).
 *
 *   npm run example
 *   curl -X POST localhost:3000/orders/42/ship -H 'content-type: application/json' -d '{"openid":"oExample-openid-0001"}'
 */
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import fastifyRedis from '@fastify/redis'
import wechatPush from '../lib/index.js'
import { createSimulator, DEMO_TEMPLATE_IDS } from '../lib/testing/index.js'
import type { WechatSimulator } from '../lib/testing/index.js'

const SHIPPED = process.env.WECHAT_TEMPLATE_ID || DEMO_TEMPLATE_IDS.orderShipped

async function main (): Promise<void> {
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
  const real = Boolean(process.env.WECHAT_APPID && process.env.WECHAT_SECRET)
  const simulator = real ? null : await createSimulator()
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
  if (process.env.REDIS_URL) await app.register(fastifyRedis, { url: process.env.REDIS_URL })
  await app.register(wechatPush, {
    appId: simulator?.appId ?? String(process.env.WECHAT_APPID),
    appSecret: simulator?.appSecret ?? String(process.env.WECHAT_SECRET),
    ...(simulator ? { baseUrl: simulator.url } : {})
  })

  // Lifecycle events: where alerts go. A token error that is not retryable (a wrong secret, an IP
  // not on the whitelist) stops every send until someone fixes it.
  app.wechat.on('message:failed', (event) => { app.log.warn({ messageId: event.id, errcode: event.errcode, errmsg: event.errmsg }, 'subscribe message failed') })
  app.wechat.on('token:error', (event) => { if (!event.retryable) app.log.error({ errcode: event.errcode }, `WeChat token: ${event.message}`) })

  app.post<{ Params: { id: string }, Body: { openid?: string } }>('/orders/:id/ship', async (request) => {
    const openid = request.body?.openid ?? 'oExample-openid-0001'
    const result = await app.wechat.send({
      toUser: openid,
      templateId: SHIPPED,
      page: `pages/order?id=${encodeURIComponent(request.params.id)}`,
      data: {
        character_string1: `SO${request.params.id}`.slice(0, 32),
        thing2: 'Blue ceramic mug x2',
        amount3: '¥58.00',
        time4: new Date().toISOString().slice(0, 16).replace('T', ' '),
        phrase5: '已发货'
      }
    })
    request.log.info({ result }, 'subscribe message sent')
    return result
  })

  const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' })

  // Show it working: ship one order through our own route and log what WeChat answered.
  const demo = await app.inject({ method: 'POST', url: '/orders/20260301/ship', payload: { openid: 'oExample-openid-0001' } })
  app.log.info({ statusCode: demo.statusCode, body: demo.json() }, `demo push done; try: curl -X POST ${address}/orders/42/ship -H 'content-type: application/json' -d '{}'`)
  if (process.env.EXAMPLE_EXIT_AFTER_DEMO) await app.close()
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
