import createError from '@fastify/error'
import type { FastifyError } from '@fastify/error'

/**
 * Every error the plugin raises. One `@fastify/error` constructor per code so users can
 * `instanceof` them and Fastify maps them to the right HTTP status. Messages never carry a
 * secret (appSecret, token, AES key) nor a raw upstream body: only errcode, errmsg and rid.
 */
/** a message, and optionally `{ cause }` last (the @fastify/error convention) */
type Args = [string, { cause: unknown }?]

/**
 * The type of an exported error class: `new`/call give, and `instanceof` narrows to, an instance
 * carrying the fields the plugin sets on the errors it raises (`err.errcode` after
 * `err instanceof WechatApiError`). @fastify/error's own constructor type knows only code and status.
 */
export interface WechatErrorClass<E extends FastifyError> {
  new (...args: Args): E
  (...args: Args): E
  readonly prototype: E
}

/** the fields every plugin error has: its code and HTTP status */
interface Coded<C extends string, S extends number> extends FastifyError {
  code: C
  statusCode: S
}

/** set on an error that ended a send: whether WeChat may have delivered it, and which message */
export interface SendFields {
  /** 'unknown': an earlier attempt timed out or lost its answer, so WeChat may have delivered the message (README "Retries and outcomes") */
  outcome?: 'failed' | 'unknown'
  /** our message id, when the error comes from a send */
  messageId?: string
}

export type WechatOptionsErrorInstance = Coded<'FST_WECHAT_OPTIONS', 500>
export const WechatOptionsError = createError('FST_WECHAT_OPTIONS', 'Invalid fastify-wechat-push option: %s', 500) as WechatErrorClass<WechatOptionsErrorInstance>

export interface WechatInvalidMessageErrorInstance extends Coded<'FST_WECHAT_INVALID_MESSAGE', 400>, InvalidMessageFields {}
export const WechatInvalidMessageError = createError('FST_WECHAT_INVALID_MESSAGE', 'Invalid subscribe message: %s', 400) as unknown as WechatErrorClass<WechatInvalidMessageErrorInstance>

export interface WechatApiErrorInstance extends Coded<'FST_WECHAT_API', 502>, WechatErrorFields {}
export const WechatApiError = createError('FST_WECHAT_API', 'WeChat answered an error: %s', 502) as unknown as WechatErrorClass<WechatApiErrorInstance>

/** FST_WECHAT_TOKEN: errcode, errmsg and rid only when the token endpoint answered one (not when unreachable) */
export interface WechatTokenErrorInstance extends Coded<'FST_WECHAT_TOKEN', 503>, SendFields {
  errcode?: number
  errmsg?: string
  rid?: string
  /** whether asking again later could help (false: a wrong secret, an IP not whitelisted, ...) */
  retryable: boolean
  /** ms until the token endpoint is asked again, when WeChat's answer or the hold calls for a wait */
  retryAfter?: number
  /** a held refusal: WeChat was not asked again for this one (README "Refused fetches") */
  held?: boolean
}
export const WechatTokenError = createError('FST_WECHAT_TOKEN', 'Could not obtain a WeChat access_token: %s', 503) as unknown as WechatErrorClass<WechatTokenErrorInstance>

/** FST_WECHAT_UPSTREAM: WeChat could not be reached, timed out or answered 5xx on every base URL */
export interface WechatUpstreamErrorInstance extends Coded<'FST_WECHAT_UPSTREAM', 504>, SendFields {
  /** true when the request may have reached WeChat (timeout, reset, 5xx): the outcome is unknown */
  ambiguous: boolean
  timedOut: boolean
  /** the last HTTP status, when WeChat answered one */
  httpStatus?: number
  /** a 4xx (not 408/425/429) without a WeChat errcode: a proxy or gateway refused the request itself; not retried */
  refused?: boolean
}
export const WechatUpstreamError = createError('FST_WECHAT_UPSTREAM', 'WeChat could not be reached: %s', 504) as unknown as WechatErrorClass<WechatUpstreamErrorInstance>

export type WechatNoCreditErrorInstance = Coded<'FST_WECHAT_NO_CREDIT', 409>
export const WechatNoCreditError = createError('FST_WECHAT_NO_CREDIT', 'No subscription credit: %s', 409) as WechatErrorClass<WechatNoCreditErrorInstance>

export interface WechatQueueErrorInstance extends Coded<'FST_WECHAT_QUEUE', 503> {
  /**
   * Messages of this enqueue that are (or may be) queued although it failed: those whose add
   * queue.replicas did not confirm (on the master, they may still run), or, when a long array failed
   * part way, the chunks added before the failure (they will be sent; the rest were undone).
   */
  messageIds?: string[]
}
export const WechatQueueError = createError('FST_WECHAT_QUEUE', 'The message could not be queued: %s', 503) as unknown as WechatErrorClass<WechatQueueErrorInstance>

export type WechatStoreErrorInstance = Coded<'FST_WECHAT_STORE', 503>
export const WechatStoreError = createError('FST_WECHAT_STORE', 'The message store is unavailable: %s', 503) as WechatErrorClass<WechatStoreErrorInstance>

export type ErrorClass = 'token' | 'transient' | 'rate' | 'quota' | 'permanent'

/** What an errcode answer carries besides its message; `retryable` says whether waiting could help. */
export interface WechatErrorFields extends SendFields {
  errcode: number
  errmsg: string
  rid?: string
  errorClass: ErrorClass
  retryable: boolean
  /** milliseconds after which a retry makes sense (45011: 60 s) */
  retryAfter?: number
}

export interface InvalidMessageFields {
  /** every violation found, so a caller can fix them all at once (`index`: which message of an enqueued array) */
  violations: { key: string; rule: string; message: string; index?: number }[]
  /** the errcode WeChat would have answered, when the plugin knows it: 40037 for a template id the account lacks */
  errcode?: number
}

export type InvalidMessageError = WechatInvalidMessageErrorInstance

const UNKNOWN_TEMPLATE_ERRCODE = 40037

/**
 * The same code for a bad argument that is no message (a call's options, the template API's
 * arguments), worded for what it is; still `instanceof WechatInvalidMessageError`.
 */
const InvalidArgumentError = createError('FST_WECHAT_INVALID_MESSAGE', 'Invalid argument: %s', 400, WechatInvalidMessageError as unknown as ErrorConstructor)

/** FST_WECHAT_INVALID_MESSAGE (400) naming every violation of a message. */
export function invalid (violations: InvalidMessageFields['violations']): InvalidMessageError {
  return withViolations(new WechatInvalidMessageError(violations.map((v) => v.message).join('; ')) as InvalidMessageError, violations)
}

/** FST_WECHAT_INVALID_MESSAGE (400) for bad arguments that are no message: "Invalid argument: ...". */
export function invalidArgument (violations: InvalidMessageFields['violations']): InvalidMessageError {
  return withViolations(new InvalidArgumentError(violations.map((v) => v.message).join('; ')) as unknown as InvalidMessageError, violations)
}

function withViolations (error: InvalidMessageError, violations: InvalidMessageFields['violations']): InvalidMessageError {
  error.violations = violations
  // refused locally "like WeChat's 40037" (issue #5): say which errcode it stands for
  if (violations.some((v) => v.rule === 'unknown_template')) error.errcode = UNKNOWN_TEMPLATE_ERRCODE
  return error
}

/**
 * The text of anything thrown, for a log line or a message: user code (a handler push, a hook) may
 * throw null, a Symbol or an object whose toString throws, and reading `.message` of those must not
 * become a second error in the error path.
 */
export function thrownText (err: unknown): string {
  if (err instanceof Error) return String(err.message)
  try {
    return String(err)
  } catch {
    return `a thrown ${typeof err}`
  }
}
