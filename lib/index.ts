import fp from 'fastify-plugin'
import fastifySchedule from '@fastify/schedule'
import type { FastifyInstance } from 'fastify'
import * as errors from './errors.js'
import { WechatHttpClient } from './api/http-client.js'
import { TokenManager } from './api/token-manager.js'
import { scheduleTokenRefresh } from './api/token-job.js'
import { WechatApi } from './api/wechat-api.js'
import { Delivery } from './delivery/delivery.js'
import { Sender } from './delivery/sender.js'
import { resolveOptions } from './options.js'
import type { ResolvedOptions } from './options.js'
import type { OptionsInput } from './options-schema.js'
import { keySpace } from './store/keys.js'
import { selectStore } from './store/select.js'
import type * as publicTypes from './public-types.js'

/**
 * Wiring only (DESIGN.md "lib/index.ts"): options → parts → decorator, job, close hook.
 * Each part lives in its folder and knows nothing of Fastify's registration.
 */
async function fastifyWechatPush (fastify: FastifyInstance, opts: fastifyWechatPush.FastifyWechatPushOptions): Promise<void> {
  const options = resolveOptions(opts)
  checkRegistration(fastify, options)
  const keys = keySpace(options.keyPrefix, options.appId)
  const log = fastify.log.child({ plugin: 'fastify-wechat-push', appId: options.appId, ...(options.namespace ? { namespace: options.namespace } : {}) })
  const store = selectStore(fastify, options, keys, log)

  const http = new WechatHttpClient({ baseUrls: options.baseUrls, timeout: options.timeout })
  const tokens = new TokenManager({
    http,
    endpoint: { mode: options.tokenEndpoint, appId: options.appId, appSecret: options.appSecret },
    store,
    clock: options.clock,
    refreshAheadMs: options.refreshAheadMs,
    timeout: options.timeout,
    retry: options.retry,
    log
  })
  const api = new WechatApi(http, tokens)
  const delivery = new Delivery(new Sender(api, options.retry, log), options)

  const wechat: fastifyWechatPush.WechatPush = {
    appId: options.appId,
    storeKind: store.kind,
    getToken: (getOptions) => tokens.getToken(getOptions?.forceRefresh === true),
    send: (message, sendOptions) => delivery.send(message, sendOptions),
    refreshToken: () => tokens.refreshIfDue()
  }
  decorate(fastify, options, wechat)

  if (!fastify.hasDecorator('scheduler')) await fastify.register(fastifySchedule)
  scheduleTokenRefresh(fastify, tokens, `wechat:token:${options.appId}${options.namespace ? `:${options.namespace}` : ''}`, options.refreshIntervalMs)

  fastify.addHook('onClose', async () => {
    tokens.close()
    await http.close()
    await store.close()
  })
}

function checkRegistration (fastify: FastifyInstance, options: ResolvedOptions): void {
  if (!fastify.hasDecorator('wechat')) return
  const existing = fastify.wechat as unknown as Record<string, unknown>
  if (options.namespace === undefined) {
    if (typeof existing.send === 'function') throw new errors.WechatOptionsError('fastify-wechat-push is already registered on this instance; give the second registration a `namespace`')
  } else if (existing[options.namespace] !== undefined) {
    throw new errors.WechatOptionsError(`namespace '${options.namespace}' is already registered`)
  }
}

function decorate (fastify: FastifyInstance, options: ResolvedOptions, wechat: fastifyWechatPush.WechatPush): void {
  if (options.namespace === undefined) {
    if (fastify.hasDecorator('wechat')) Object.assign(fastify.wechat, wechat)
    else fastify.decorate('wechat', wechat as fastifyWechatPush.WechatPushDecorator)
    return
  }
  if (!fastify.hasDecorator('wechat')) fastify.decorate('wechat', {} as fastifyWechatPush.WechatPushDecorator)
  ;(fastify.wechat as unknown as Record<string, unknown>)[options.namespace] = wechat
}

fp(fastifyWechatPush, { fastify: '5.x', name: 'fastify-wechat-push' })

declare module 'fastify' {
  interface FastifyInstance {
    wechat: fastifyWechatPush.WechatPushDecorator
  }
}

namespace fastifyWechatPush {
  export type FastifyWechatPushOptions = OptionsInput
  export type WechatPush = publicTypes.WechatPush
  export type WechatPushDecorator = publicTypes.WechatPushDecorator
  export type SubscribeMessage = publicTypes.SubscribeMessage
  export type SendResult = publicTypes.SendResult
  export type SendOptions = publicTypes.SendOptions
  export type MessageRecord = publicTypes.MessageRecord
  export type Status = publicTypes.Status
  export type GetTokenOptions = publicTypes.GetTokenOptions
  export type ValueChange = publicTypes.ValueChange
  export const WechatOptionsError = errors.WechatOptionsError
  export const WechatInvalidMessageError = errors.WechatInvalidMessageError
  export const WechatApiError = errors.WechatApiError
  export const WechatTokenError = errors.WechatTokenError
  export const WechatUpstreamError = errors.WechatUpstreamError
  export const WechatNoCreditError = errors.WechatNoCreditError
  /** `import { fastifyWechatPush } from 'fastify-wechat-push'` */
  export const plugin = fastifyWechatPush
}

export = fastifyWechatPush
