import fp from 'fastify-plugin'
import fastifySchedule from '@fastify/schedule'
import type { FastifyInstance } from 'fastify'
import * as errors from './errors.js'
import { WechatHttpClient } from './api/http-client.js'
import { TokenManager } from './api/token-manager.js'
import { WechatApi } from './api/wechat-api.js'
import { TemplateApi } from './api/templates.js'
import { TemplateCatalog } from './delivery/templates-catalog.js'
import { templatesFacade } from './delivery/templates-facade.js'
import { scheduleJob } from './scheduled-job.js'
import * as typedTemplates from './typed-templates.js'
import { Delivery } from './delivery/delivery.js'
import { getTokenOptions } from './delivery/call-options.js'
import { EVENTS_DRAIN_MS, PushEventBus } from './push/event-bus.js'
import { QuotaClock } from './delivery/quota-clock.js'
import { msUntilQuotaReset } from './api/quota.js'
import { localSendPause, queueSendPause } from './delivery/send-pause.js'
import { registerPushEndpoint } from './push/plugin.js'
import { Sender } from './delivery/sender.js'
import { CLOSE_GRACE_MS } from './delivery/queue.js'
import { createQueue } from './delivery/setup.js'
import { Credits } from './delivery/credits.js'
import type { JobData } from './delivery/job-runner.js'
import { handleReceipts } from './delivery/receipts.js'
import type { DeliveryOutcome } from './delivery/sender.js'
import { registerHandlerPushes } from './http/handler-pushes.js'
import { registerRoutes } from './http/routes.js'
import { resolveOptions } from './options.js'
import type { ResolvedOptions } from './options.js'
import type { OptionsInput } from './options-schema.js'
import { keySpace } from './store/keys.js'
import { selectStore } from './store/select.js'
import type * as publicTypes from './public-types.js'
import type { SendOptions } from './delivery/delivery.js'
import type { EnqueueOptions } from './delivery/enqueue.js'

/**
 * Wiring only (DESIGN.md "lib/index.ts"): options → parts → decorator, job, close hook.
 * Each part lives in its folder and knows nothing of Fastify's registration.
 */
async function fastifyWechatPush (fastify: FastifyInstance, opts: fastifyWechatPush.FastifyWechatPushOptions): Promise<void> {
  const options = resolveOptions(opts)
  checkRegistration(fastify, options)
  const keys = keySpace(options.keyPrefix, options.appId)
  const log = fastify.log.child({ plugin: 'fastify-wechat-push', appId: options.appId, ...(options.namespace ? { namespace: options.namespace } : {}) }, options.logLevel === undefined ? undefined : { level: options.logLevel })
  const store = selectStore(fastify, options, keys, log)
  if (options.credits === 'enforce' && !options.push && store.kind === 'memory') {
    // Only WeChat's popup pushes grant credits, and no other instance can share them here.
    log.warn("wechat: credits: 'enforce' without push on the memory store: no credit can ever be granted, so every one-time template is refused (FST_WECHAT_NO_CREDIT)")
  }

  // WeChat's pushes and the plugin's own lifecycle events (lib/lifecycle.ts) share one bus.
  const events = new PushEventBus(log)
  const http = new WechatHttpClient({ baseUrls: options.baseUrls, timeout: options.timeout })
  const tokens = new TokenManager({
    http,
    endpoint: { mode: options.tokenEndpoint, appId: options.appId, appSecret: options.appSecret },
    store,
    clock: options.clock,
    refreshAheadMs: options.refreshAheadMs,
    timeout: options.timeout,
    retry: options.retry,
    log,
    emit: events.emitLifecycle
  })
  const api = new WechatApi(http, tokens, options.appSecret)
  const sender = new Sender(api, options.retry, log, options.clock)
  const templateApi = new TemplateApi(api, options.retry, log, () => options.clock.now())
  const catalog = options.templates ? new TemplateCatalog(templateApi, store, { ttlMs: options.templates.ttlSeconds * 1000, validate: options.templates.validate && options.validation !== 'off', clock: options.clock, waitMs: options.timeout }, log) : null
  const credits = new Credits(store, options.credits, (templateId) => catalog?.kindOf(templateId), log, (templateIds) => catalog?.kindsReady(templateIds))
  const settle = (data: JobData, outcome: DeliveryOutcome): Promise<void> => credits.settle(data.wire.touser, data.wire.template_id, outcome, data.reserved === true)
  // (the clock's reset ends a 45009 pause: with a test's clock, real time would not)
  const quotaClock = new QuotaClock(options.clock, async () => await queue?.resume(), log)
  const queue = createQueue(options, store, keys, sender, log, {
    onSent: settle,
    onFailed: settle,
    emit: events.emitLifecycle,
    onQuotaPause: (ms) => { quotaClock.paused(ms) },
    // (a pause another instance began ends at the reset by this plugin's clock too)
    onQuotaAdopted: () => { quotaClock.paused(msUntilQuotaReset(options.clock.now())) },
    // (a resume on another instance: the quotas were cleared, so a token fetch held for 45009 may ask again)
    onQuotaResumed: () => { tokens.quotaReset() }
  })
  const sendPause = queue === null ? localSendPause(options.clock) : queueSendPause(queue, options.clock, (ms) => { quotaClock.paused(ms) }, log)
  const delivery = new Delivery(sender, store, queue, options, log, credits, catalog ?? undefined, events.emitLifecycle, sendPause)
  const receipts = handleReceipts(events, store, credits, options, log)

  let handlerPushes: ReturnType<typeof registerHandlerPushes> | null = null
  const wechat: fastifyWechatPush.WechatPush = {
    appId: options.appId,
    storeKind: store.kind,
    getToken: async (getOptions) => tokens.getToken(getTokenOptions(getOptions)),
    send: (message: unknown, sendOptions?: SendOptions) => delivery.send(message, sendOptions),
    enqueue: (messages: unknown, enqueueOptions?: EnqueueOptions) => delivery.enqueue(messages, enqueueOptions),
    status: (id) => delivery.status(id),
    stats: () => delivery.stats(),
    credits: (openid) => delivery.credits(openid),
    handlerPushes: () => handlerPushes?.counters() ?? { queued: 0, skipped: 0, failed: 0, waiting: 0 },
    refreshToken: () => tokens.refreshIfDue(),
    resumeQueue: async () => {
      if (queue === null) throw new errors.WechatQueueError('the queue is off (queue: false): there is nothing to resume')
      // (the quotas were cleared: a token fetch held for the token endpoint's own 45009 may ask again)
      tokens.quotaReset()
      try {
        return { released: await queue.resume() }
      } catch (err) {
        // (Redis unreachable: the pause, here and in the fleet, stays as it was; call it again)
        throw new errors.WechatQueueError(`could not resume the queue (${errors.thrownText(err)})`, { cause: err })
      }
    },
    templates: templatesFacade(templateApi, catalog, log),
    on: (event: string, handler: (payload: never) => unknown) => { events.on(event, handler as (payload: fastifyWechatPush.PushMessage) => unknown) }
  }
  decorate(fastify, options, wechat)
  if (options.routes) registerRoutes(fastify, { routes: options.routes, wechat, queue: queue !== null, clock: options.clock })
  if (options.push) registerPushEndpoint(fastify, { push: options.push, appId: options.appId, store, events, clock: options.clock, log })

  if (!fastify.hasDecorator('scheduler')) await fastify.register(fastifySchedule)
  const jobSuffix = `${options.appId}${options.namespace ? `:${options.namespace}` : ''}`
  // Renews ahead of expiry so request paths never wait; runs at boot to warm the token.
  scheduleJob(fastify, log, { id: `wechat:token:${jobSuffix}`, intervalMs: options.refreshIntervalMs, runImmediately: true, what: 'token refresh', work: () => tokens.refreshIfDue() })
  if (catalog && options.templates) {
    // Does nothing until the list was first needed, so an app that never sends never calls gettemplate.
    scheduleJob(fastify, log, { id: `wechat:templates:${jobSuffix}`, intervalMs: options.templates.ttlSeconds * 500, runImmediately: false, what: 'template list refresh', work: () => catalog.refreshIfDue() })
  }

  // Assigned before any request can reach wechat.handlerPushes(): the decorator only reads it later.
  // Also with `queue: false`: a route declaring config.wechatPush then fails at boot, and a
  // reply.wechatPush() call is logged and counted as failed rather than breaking its response.
  handlerPushes = !fastify.hasReplyDecorator('wechatPush') ? registerHandlerPushes(fastify, delivery, queue !== null) : null
  if (queue) fastify.addHook('onReady', async () => { await queue.start() })

  fastify.addHook('onClose', async () => {
    // (template reads are not needed to shut down: a list load under way ends now)
    templateApi.close()
    receipts.close()
    quotaClock.stop()
    await handlerPushes?.drain()
    await queue?.close(CLOSE_GRACE_MS)
    await delivery.flush()
    credits.close()
    await events.drainForClose(EVENTS_DRAIN_MS)
    tokens.close()
    await http.close()
    await store.close()
  })
}

/**
 * The members of `app.wechat` (test/options.test.ts tries each member of the object): a namespace
 * with one of these names, or one Object.prototype has (`__proto__`, `constructor`...), would overwrite
 * a member or the object's prototype.
 */
const WECHAT_MEMBERS: readonly string[] = ['appId', 'storeKind', 'getToken', 'send', 'enqueue', 'status', 'stats', 'credits', 'handlerPushes', 'refreshToken', 'resumeQueue', 'templates', 'on']

function checkRegistration (fastify: FastifyInstance, options: ResolvedOptions): void {
  const namespace = options.namespace
  if (namespace !== undefined && (WECHAT_MEMBERS.includes(namespace) || namespace in Object.prototype)) {
    throw new errors.WechatOptionsError(`namespace '${namespace}' is the name of a member of app.wechat or of every object; choose another`)
  }
  if (!fastify.hasDecorator('wechat')) return
  const existing = fastify.wechat as unknown as Record<string, unknown>
  if (namespace === undefined) {
    if (typeof existing.send === 'function') throw new errors.WechatOptionsError('fastify-wechat-push is already registered on this instance; give the second registration a `namespace`')
  } else if (Object.hasOwn(existing, namespace)) {
    throw new errors.WechatOptionsError(`namespace '${namespace}' is already registered`)
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
/** the plugin function, for the namespace below (inside it the name means the namespace member) */
const self = fastifyWechatPush

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
  export type EnqueueOptions = publicTypes.EnqueueOptions
  export type EnqueueResult = publicTypes.EnqueueResult
  export type StatsSnapshot = publicTypes.StatsSnapshot
  export type WechatPushConfig<Payload = unknown> = publicTypes.WechatPushConfig<Payload>
  export type WechatPushResult = publicTypes.WechatPushResult
  export type OnRequestHook = publicTypes.OnRequestHook
  export type PreHandlerHook = publicTypes.PreHandlerHook
  export type HandlerPushCounters = publicTypes.HandlerPushCounters
  export type PushEventMap = publicTypes.PushEventMap
  export type PushMessage = publicTypes.PushMessage
  export type LifecycleEventMap = publicTypes.LifecycleEventMap
  export type MessageEvent = publicTypes.MessageEvent
  export type TokenFetchedEvent = publicTypes.TokenFetchedEvent
  export type TokenErrorEvent = publicTypes.TokenErrorEvent
  export type PopupEvent = publicTypes.PopupEvent
  export type ChangeEvent = publicTypes.ChangeEvent
  export type SentEvent = publicTypes.SentEvent
  export type PopupItem = publicTypes.PopupItem
  export type ChangeItem = publicTypes.ChangeItem
  export type SentItem = publicTypes.SentItem
  export type PushEnvelope = publicTypes.PushEnvelope
  export type OtherPush = publicTypes.OtherPush
  export type ErrorClass = errors.ErrorClass
  export type WechatTemplates = publicTypes.WechatTemplates
  export type PrivateTemplate = publicTypes.PrivateTemplate
  export type TemplateCategory = publicTypes.TemplateCategory
  export type PublicTemplateTitle = publicTypes.PublicTemplateTitle
  export type PublicTemplateKeyword = publicTypes.PublicTemplateKeyword
  export type PublicTitlesQuery = publicTypes.PublicTitlesQuery
  export type AddTemplateInput = publicTypes.AddTemplateInput
  export type TemplateSpec = publicTypes.TemplateSpec
  export type KeywordSpec = publicTypes.KeywordSpec
  export type KeywordInput<V extends KeywordSpec> = publicTypes.KeywordInput<V>
  export type TemplateDefinition<S extends TemplateSpec = TemplateSpec> = publicTypes.TemplateDefinition<S>
  export type TemplateData<S extends TemplateSpec> = publicTypes.TemplateData<S>
  export type TypedMessage<S extends TemplateSpec> = publicTypes.TypedMessage<S>
  export type TypedIdMessage<S extends TemplateSpec> = publicTypes.TypedIdMessage<S>
  export type TemplateFieldMessage<S extends TemplateSpec> = publicTypes.TemplateFieldMessage<S>
  export type TypedMessageFields<S extends TemplateSpec> = publicTypes.TypedMessageFields<S>
  /** declare a template's keys once for type-checked messages (`template: shipped`) */
  export const defineTemplate = typedTemplates.defineTemplate
  /**
   * The error classes: `err instanceof wechatPush.WechatApiError` narrows `err` to the instance type of
   * the same name, with its fields (`err.errcode`, `err.retryable`, ...); README "Errors".
   */
  export const WechatOptionsError = errors.WechatOptionsError
  export type WechatOptionsError = errors.WechatOptionsErrorInstance
  export const WechatInvalidMessageError = errors.WechatInvalidMessageError
  export type WechatInvalidMessageError = errors.WechatInvalidMessageErrorInstance
  export const WechatApiError = errors.WechatApiError
  export type WechatApiError = errors.WechatApiErrorInstance
  export const WechatTokenError = errors.WechatTokenError
  export type WechatTokenError = errors.WechatTokenErrorInstance
  export const WechatUpstreamError = errors.WechatUpstreamError
  export type WechatUpstreamError = errors.WechatUpstreamErrorInstance
  export const WechatNoCreditError = errors.WechatNoCreditError
  export type WechatNoCreditError = errors.WechatNoCreditErrorInstance
  export const WechatQueueError = errors.WechatQueueError
  export type WechatQueueError = errors.WechatQueueErrorInstance
  export const WechatStoreError = errors.WechatStoreError
  export type WechatStoreError = errors.WechatStoreErrorInstance
  /** the plugin itself, also as `import { fastifyWechatPush } from 'fastify-wechat-push'` */
  export const plugin = self
  export const fastifyWechatPush = self
}

export = fastifyWechatPush

// Node's ESM loader finds a CommonJS module's named exports by reading its source (cjs-module-lexer):
// it sees `module.exports.name = ...`, not the namespace's properties above, so without these lines
// `import { defineTemplate } from 'fastify-wechat-push'` typechecks and then fails in native ESM.
// They only name the exports for the lexer: TypeScript emits `module.exports = fastifyWechatPush`
// after them, and the values an app gets are the namespace's (the same ones).
// One line per value of the namespace: test/esm-exports.test.ts fails when one is missing.
module.exports.default = fastifyWechatPush
module.exports.fastifyWechatPush = fastifyWechatPush
module.exports.plugin = fastifyWechatPush
module.exports.defineTemplate = fastifyWechatPush.defineTemplate
module.exports.WechatOptionsError = fastifyWechatPush.WechatOptionsError
module.exports.WechatInvalidMessageError = fastifyWechatPush.WechatInvalidMessageError
module.exports.WechatApiError = fastifyWechatPush.WechatApiError
module.exports.WechatTokenError = fastifyWechatPush.WechatTokenError
module.exports.WechatUpstreamError = fastifyWechatPush.WechatUpstreamError
module.exports.WechatNoCreditError = fastifyWechatPush.WechatNoCreditError
module.exports.WechatQueueError = fastifyWechatPush.WechatQueueError
module.exports.WechatStoreError = fastifyWechatPush.WechatStoreError
