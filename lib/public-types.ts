import type { SubscribeMessage, ValueChange } from './delivery/message.js'
import type { SendResult } from './delivery/sender.js'
import type { SendOptions } from './delivery/delivery.js'
import type { EnqueueOptions, EnqueueResult } from './delivery/enqueue.js'
import type { MessageRecord, StatsSnapshot, Status } from './store/records.js'
import type { HandlerPushCounters, WechatPushConfig, WechatPushResult } from './http/handler-pushes.js'
import type { OnRequestHook, PreHandlerHook } from './options-schema.js'
import type { PushEventMap } from './push/event-bus.js'
import type { LifecycleEventMap, MessageEvent, TokenErrorEvent, TokenFetchedEvent } from './lifecycle.js'
import type { ChangeEvent, ChangeItem, OtherPush, PopupEvent, PopupItem, PushEnvelope, PushMessage, SentEvent, SentItem } from './push/events.js'
import type { WechatTemplates } from './delivery/templates-facade.js'
import type {
  AddTemplateInput, PrivateTemplate, PublicTemplateKeyword, PublicTemplateTitle, PublicTitlesQuery, TemplateCategory
} from './api/templates.js'
import type {
  KeywordInput, KeywordSpec, TemplateData, TemplateDefinition, TemplateFieldMessage, TemplateSpec, TypedIdMessage, TypedMessage, TypedMessageFields
} from './typed-templates.js'

export type { SubscribeMessage, ValueChange, SendResult, SendOptions, EnqueueOptions, EnqueueResult, MessageRecord, StatsSnapshot, Status, WechatPushConfig, WechatPushResult, HandlerPushCounters }
export type { OnRequestHook, PreHandlerHook }
export type { LifecycleEventMap, MessageEvent, TokenErrorEvent, TokenFetchedEvent }
export type { PushEventMap, PushMessage, PushEnvelope, PopupEvent, PopupItem, ChangeEvent, ChangeItem, SentEvent, SentItem, OtherPush }
export type { WechatTemplates, AddTemplateInput, PrivateTemplate, PublicTemplateKeyword, PublicTemplateTitle, PublicTitlesQuery, TemplateCategory }
export type { KeywordInput, KeywordSpec, TemplateData, TemplateDefinition, TemplateFieldMessage, TemplateSpec, TypedIdMessage, TypedMessage, TypedMessageFields }

export interface GetTokenOptions {
  /** treat the current token as refused: fetch another (stable mode: force_refresh only if WeChat returns the same one) */
  forceRefresh?: boolean
}

/** `fastify.wechat` (or `fastify.wechat[namespace]`). */
export interface WechatPush {
  /** the mini program this instance serves */
  readonly appId: string
  /** 'redis' or 'memory': where the shared state lives */
  readonly storeKind: 'redis' | 'memory'
  getToken (options?: GetTokenOptions): Promise<string>
  /** a typed message (`templateId: defineTemplate(...)`, or `template:`): its data keys are checked at compile time */
  send<S extends TemplateSpec> (message: TypedMessage<S>, options?: SendOptions): Promise<SendResult>
  send (message: SubscribeMessage, options?: SendOptions): Promise<SendResult>
  /** validated and recorded now, delivered by the queue with retries; `{ id, status }` per message */
  enqueue<S extends TemplateSpec> (messages: TypedMessage<S> | readonly TypedMessage<S>[], options?: EnqueueOptions): Promise<EnqueueResult[]>
  enqueue (messages: SubscribeMessage | readonly SubscribeMessage[], options?: EnqueueOptions): Promise<EnqueueResult[]>
  /** the record of a message (sent, queued or pushed from a handler), or null */
  status (id: string): Promise<MessageRecord | null>
  /** the credits ledger of one user: templateId → sends left (option `credits`) */
  credits (openid: string): Promise<Record<string, number>>
  /** counts per status, per template, errcode histogram and the latest failures */
  stats (): Promise<StatsSnapshot>
  /** counts of pushes from route handlers (`reply.wechatPush`, `config.wechatPush`) since the app started */
  handlerPushes (): HandlerPushCounters
  /** runs the scheduled token job's work now (also what the job calls) */
  refreshToken (): Promise<void>
  /**
   * End the queue's 45009 pause now, fleet-wide (call it once the daily quota was reset with WeChat's
   * clear_quota): the messages parked for the reset are sent again. `released`: how many were parked.
   */
  resumeQueue (): Promise<{ released: number }>
  /** subscribe template management and the account's cached template list (option `templates`) */
  readonly templates: WechatTemplates
  /**
   * Handle pushes from WeChat (option `push`; README "WeChat's pushes"): a subscribe event name, or `'event'` for
   * every push. Handlers run after WeChat got its `success`; errors are logged, never thrown. Without
   * `push` configured they simply never fire.
   * Or a lifecycle event of this process: `'message:sent'`, `'message:delivered'` (needs `push`),
   * `'message:failed'`, `'message:unknown'`, `'token:fetched'`, `'token:error'`; emitted once, by the
   * instance that did the work.
   */
  on<K extends keyof PushEventMap>(event: K, handler: (payload: PushEventMap[K]) => unknown): void
  on<K extends keyof LifecycleEventMap>(event: K, handler: (payload: LifecycleEventMap[K]) => unknown): void
  /** any other push `Event` name (WeChat's have no ':'; a name with one must be a lifecycle event above) */
  on<E extends string>(event: E extends `${string}:${string}` ? never : E, handler: (payload: PushMessage) => unknown): void
}

export type WechatPushDecorator = WechatPush & { [namespace: string]: WechatPush }
