import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import fastifyRedis from '@fastify/redis'
import wechatPush from '../../lib/index.js'
import { createSimulator, DEMO_TEMPLATE_IDS } from '../../lib/testing/index.js'
import type { WechatSimulator } from '../../lib/testing/index.js'
import type { SubscribeMessage } from '../../lib/public-types.js'

export interface Teardown { teardown (fn: () => unknown): void }

export const SECRET = 'test-secret-9f8e7d6c5b4a'
export const APP_ID = 'wxa1b2c3d4e5f60718'

export async function startSimulator (t: Teardown, options: Parameters<typeof createSimulator>[0] = {}): Promise<WechatSimulator> {
  // A short pause between push retries: tests that push something the app refuses would wait 2 s each.
  const sim = await createSimulator({ appId: APP_ID, appSecret: SECRET, pushRetryDelayMs: 20, ...options })
  t.teardown(() => sim.close())
  return sim
}

export interface AppOptions {
  redisUrl?: string
  /** more @fastify/redis (ioredis) options for the app's client */
  redisOptions?: Record<string, unknown>
  logger?: Record<string, unknown> | boolean
  plugin?: Record<string, unknown>
  /** the test's own routes, declared before ready() */
  setup?: (app: FastifyInstance) => void
}

/** One Fastify app with the plugin pointed at `sim`; closed when the test ends. */
export async function buildApp (t: Teardown, sim: WechatSimulator, options: AppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: options.logger ?? false })
  t.teardown(() => app.close())
  if (options.redisUrl) await app.register(fastifyRedis, { url: options.redisUrl, maxRetriesPerRequest: 1, ...options.redisOptions })
  await app.register(wechatPush, {
    appId: sim.appId,
    appSecret: sim.appSecret,
    baseUrl: sim.url,
    retry: { attempts: 3, minDelay: 5, maxDelay: 20 },
    timeout: 5000, // generous: a loaded CI machine must not turn slow answers into retries (duplicates)
    ...options.plugin
  } as never)
  options.setup?.(app)
  await app.ready()
  return app
}

let serial = 0
/** A message valid for the simulator's demo "order shipped" template. */
export function shippedMessage (toUser = 'oUser-test-openid-000001'): SubscribeMessage {
  serial++
  return {
    toUser,
    templateId: DEMO_TEMPLATE_IDS.orderShipped,
    page: `pages/order?id=${serial}`,
    data: {
      character_string1: `SO2026${String(serial).padStart(6, '0')}`,
      thing2: 'Blue ceramic mug x2',
      amount3: '¥58.00',
      time4: '2026-03-01 14:05',
      phrase5: '已发货'
    }
  }
}
