import type { SubscribeMessage, ValueChange } from './delivery/message.js'
import type { SendResult } from './delivery/sender.js'
import type { SendOptions } from './delivery/delivery.js'

export type { SubscribeMessage, ValueChange, SendResult, SendOptions }

export type Status = 'pending' | 'sending' | 'sent' | 'delivered' | 'failed' | 'unknown'

export interface MessageRecord {
  id: string
  status: Status
  templateId: string
  toUser?: string
  attempts: number
  errcode?: number
  errmsg?: string
  msgid?: string
  createdAt: string
  updatedAt: string
}

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
  send (message: SubscribeMessage, options?: SendOptions): Promise<SendResult>
  /** runs the scheduled token job's work now (also what the job calls) */
  refreshToken (): Promise<void>
}

export type WechatPushDecorator = WechatPush & { [namespace: string]: WechatPush }
