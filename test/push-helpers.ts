/**
 * Shared helpers of the test/push-*.test.ts files (not a test file itself: tap runs *.test.ts only).
 */
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import fastifyRedis from '@fastify/redis'
import type { AddressInfo } from 'node:net'
import wechatPush from '../lib/index.js'
import type { PushMessage } from '../lib/public-types.js'
import type { WechatSimulator } from '../lib/testing/index.js'
import type { Teardown } from './helpers/app.js'

export const TOKEN = 'pushToken123'
// 43 characters of [A-Za-z0-9] each (WECHAT.md §6.1).
export const KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG'
export const OLD_KEY = 'ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut'
export const OTHER_KEY = 'Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8L9z0X1c'
export const OPENID = 'oAbC1-xYz_exampleOpenid000'
export const TPL_A = 'TplAaaaExample111'
export const TPL_B = 'TplBbbbExample222'

export interface LogLine { level: number, msg: string, [key: string]: unknown }

export interface PushAppOptions {
  push?: Record<string, unknown> | false
  plugin?: Record<string, unknown>
  redisUrl?: string
  /** Called before ready: add the user's own routes here. */
  setup?: (app: FastifyInstance) => void
  /** Listen on 127.0.0.1 (needed when the simulator pushes over HTTP). */
  listen?: boolean
  /** Collect log lines at this level and above. */
  logLevel?: string
  /** The app logger's own serializers (with logLevel). */
  serializers?: Record<string, (value: any) => unknown>
}

export interface PushApp {
  app: FastifyInstance
  url: string
  logs: LogLine[]
}

/** One app with the plugin and a push endpoint, pointed at `sim`, closed when the test ends. */
export async function pushApp (t: Teardown, sim: WechatSimulator, options: PushAppOptions = {}): Promise<PushApp> {
  const logs: LogLine[] = []
  const logger = options.logLevel === undefined
    ? false
    : { level: options.logLevel, serializers: options.serializers, stream: { write: (line: string) => { logs.push(JSON.parse(line) as LogLine) } } }
  const app = Fastify({ logger })
  t.teardown(() => app.close())
  if (options.redisUrl) await app.register(fastifyRedis, { url: options.redisUrl, maxRetriesPerRequest: 1 })
  await app.register(wechatPush, {
    appId: sim.appId,
    appSecret: sim.appSecret,
    baseUrl: sim.url,
    retry: { attempts: 2, minDelay: 5, maxDelay: 20 },
    timeout: 5000, // generous: a loaded CI machine must not turn slow answers into retries (duplicates)
    push: options.push ?? { token: TOKEN, encodingAESKey: KEY },
    ...options.plugin
  } as never)
  options.setup?.(app)
  let url = ''
  if (options.listen) {
    await app.listen({ port: 0, host: '127.0.0.1' })
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  } else {
    await app.ready()
  }
  return { app, url, logs }
}

/** Collects what handlers of `event` receive. */
export function collect (app: FastifyInstance, event = 'event'): PushMessage[] {
  const seen: PushMessage[] = []
  app.wechat.on(event, (message) => { seen.push(message) })
  return seen
}

/** Polls until `predicate` holds (handlers run after the answer, so tests wait for them). */
export async function waitFor (predicate: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('waitFor: condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Lets pending setImmediate dispatches and their handlers run. */
export async function settle (): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
}

export function popupEvent (openid = OPENID, createTime: number | string = 1767225600): Record<string, unknown> {
  return {
    ToUserName: 'gh_0a1b2c3d4e5f',
    FromUserName: openid,
    CreateTime: createTime,
    MsgType: 'event',
    Event: 'subscribe_msg_popup_event',
    List: [
      { TemplateId: TPL_A, SubscribeStatusString: 'accept', PopupScene: '0' },
      { TemplateId: TPL_B, SubscribeStatusString: 'reject', PopupScene: 0 }
    ]
  }
}

export function sentEvent (msgId = '2100000000000000123', createTime: number | string = '1767232800'): Record<string, unknown> {
  return {
    ToUserName: 'gh_0a1b2c3d4e5f',
    FromUserName: OPENID,
    CreateTime: createTime,
    MsgType: 'event',
    Event: 'subscribe_msg_sent_event',
    List: [{ TemplateId: TPL_A, MsgID: msgId, ErrorCode: '0', ErrorStatus: 'success' }]
  }
}

export function changeEvent (): Record<string, unknown> {
  return {
    ToUserName: 'gh_0a1b2c3d4e5f',
    FromUserName: OPENID,
    CreateTime: 1767229200,
    MsgType: 'event',
    Event: 'subscribe_msg_change_event',
    List: [{ TemplateId: TPL_A, SubscribeStatusString: 'reject' }]
  }
}
