import createError from '@fastify/error'

/**
 * Every error the plugin raises. One `@fastify/error` constructor per code so users can
 * `instanceof` them and Fastify maps them to the right HTTP status. Messages never carry a
 * secret (appSecret, token, AES key) nor a raw upstream body: only errcode, errmsg and rid.
 */
/** a message, and optionally `{ cause }` last (the @fastify/error convention) */
type Args = [string, { cause: unknown }?]

export const WechatOptionsError = createError<'FST_WECHAT_OPTIONS', 500, Args>(
  'FST_WECHAT_OPTIONS', 'Invalid fastify-wechat-push option: %s', 500)

export const WechatInvalidMessageError = createError<'FST_WECHAT_INVALID_MESSAGE', 400, Args>(
  'FST_WECHAT_INVALID_MESSAGE', 'Invalid subscribe message: %s', 400)

export const WechatApiError = createError<'FST_WECHAT_API', 502, Args>(
  'FST_WECHAT_API', 'WeChat answered an error: %s', 502)

export const WechatTokenError = createError<'FST_WECHAT_TOKEN', 503, Args>(
  'FST_WECHAT_TOKEN', 'Could not obtain a WeChat access_token: %s', 503)

export const WechatUpstreamError = createError<'FST_WECHAT_UPSTREAM', 504, Args>(
  'FST_WECHAT_UPSTREAM', 'WeChat could not be reached: %s', 504)

export const WechatNoCreditError = createError<'FST_WECHAT_NO_CREDIT', 409, Args>(
  'FST_WECHAT_NO_CREDIT', 'No subscription credit: %s', 409)

export const WechatQueueError = createError<'FST_WECHAT_QUEUE', 503, Args>(
  'FST_WECHAT_QUEUE', 'The message could not be queued: %s', 503)

export const WechatStoreError = createError<'FST_WECHAT_STORE', 503, Args>(
  'FST_WECHAT_STORE', 'The message store is unavailable: %s', 503)

export type ErrorClass = 'token' | 'transient' | 'rate' | 'quota' | 'permanent'

/** What an errcode answer carries besides its message; `retryable` says whether waiting could help. */
export interface WechatErrorFields {
  errcode: number
  errmsg: string
  rid?: string
  errorClass: ErrorClass
  retryable: boolean
  /** set when an earlier attempt timed out: WeChat may have delivered the message (WECHAT.md §2.3) */
  outcome?: 'failed' | 'unknown'
  /** our message id, when the error comes from a send */
  messageId?: string
  /** milliseconds after which a retry makes sense (45011: 60 s) */
  retryAfter?: number
}

export type WechatApiErrorInstance = InstanceType<typeof WechatApiError> & WechatErrorFields

export interface InvalidMessageFields {
  /** every violation found, so a caller can fix them all at once */
  violations: { key: string; rule: string; message: string }[]
}

export type InvalidMessageError = InstanceType<typeof WechatInvalidMessageError> & InvalidMessageFields

/** FST_WECHAT_INVALID_MESSAGE (400) naming every violation, for bad messages and bad arguments alike. */
export function invalid (violations: InvalidMessageFields['violations']): InvalidMessageError {
  const error = new WechatInvalidMessageError(violations.map((v) => v.message).join('; ')) as InvalidMessageError
  error.violations = violations
  return error
}
