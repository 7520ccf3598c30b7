import { STATUS_CODES } from 'node:http'
import type { FastifyBaseLogger, FastifyError, FastifyReply } from 'fastify'
import { msUntilQuotaReset } from '../api/quota.js'
import type { ErrorReplyType } from './schemas.js'

/** Reads of records and counters failed (Redis down): not the caller's fault, and not a bug either. */
export { WechatStoreError } from '../errors.js'

export const INTERNAL_MESSAGE = 'Internal Server Error (logged on the server)'

/** What the plugin's errors may carry (errors.ts WechatErrorFields, InvalidMessageFields, upstream fields). */
type AnyError = Partial<FastifyError> & {
  errcode?: unknown
  errmsg?: unknown
  rid?: unknown
  errorClass?: unknown
  retryAfter?: unknown
  messageId?: unknown
  messageIds?: unknown
  outcome?: unknown
  violations?: unknown
}

export interface MappedError {
  statusCode: number
  body: ErrorReplyType
  /** seconds, for the Retry-After header */
  retryAfter?: number
  /** 4xx: the caller's problem (info); 502-504: WeChat's or Redis's (warn); 500: ours (error) */
  level: 'info' | 'warn' | 'error'
}

export interface MapOptions {
  /**
   * Status of a permanent WeChat errcode. 422 where the caller sent a message (the message is what
   * WeChat refused); 502, DESIGN.md's FST_WECHAT_API status, on routes that only read from WeChat
   * (GET /templates: a 48001 there is not the caller's request's fault).
   */
  refusalStatus?: 422 | 502
  /** the route's body limit in bytes, named in the 400 that answers a body over it */
  bodyLimit?: number
}

/**
 * Fastify's refusals of a body before any schema sees it. Issue #3: a bad body (non-JSON, huge) is a
 * 400 with a message, like any other bad body; Fastify's code is kept, its 413/415 become 400.
 */
const BODY_REFUSALS = new Set(['FST_ERR_CTP_INVALID_MEDIA_TYPE', 'FST_ERR_CTP_BODY_TOO_LARGE'])

/**
 * The status table of DESIGN.md "Errors", refined for HTTP callers: a WeChat errcode that no retry
 * can fix is the caller's message's fault (422); every other errcode, rate (45011) and quota (45009)
 * included, is FST_WECHAT_API's 502, with Retry-After for rate and quota; the rest keep their coded
 * status. A body Fastify refuses (not JSON, too large) is a 400; Fastify's other 4xx (validation,
 * bad JSON) and a user hook's thrown 4xx keep theirs. Anything else is our bug: a 500 whose message
 * reveals nothing.
 */
export function mapError (input: unknown, now: number, options: MapOptions = {}): MappedError {
  const err = (input ?? {}) as AnyError
  const code = typeof err.code === 'string' ? err.code : undefined
  if (code?.startsWith('FST_WECHAT_')) return mapCoded(err, code, now, options.refusalStatus ?? 422)
  if (code !== undefined && BODY_REFUSALS.has(code)) return { statusCode: 400, body: base(400, code, bodyMessage(code, options.bodyLimit)), level: 'info' }
  const status = err.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { statusCode: status, body: base(status, code ?? 'FST_ERR_BAD_REQUEST', String(err.message)), level: 'info' }
  }
  return { statusCode: 500, body: base(500, 'FST_WECHAT_INTERNAL', INTERNAL_MESSAGE), level: 'error' }
}

function mapCoded (err: AnyError, code: string, now: number, refusalStatus: 422 | 502): MappedError {
  let statusCode = typeof err.statusCode === 'number' ? err.statusCode : 500
  let retryAfter: number | undefined
  if (code === 'FST_WECHAT_API') {
    switch (err.errorClass) {
      case 'permanent': statusCode = refusalStatus; break
      // DESIGN.md: FST_WECHAT_API is a 502. Rate and quota also say when to come back (Retry-After).
      case 'rate':
        statusCode = 502
        retryAfter = Math.ceil((typeof err.retryAfter === 'number' ? err.retryAfter : 60_000) / 1000)
        break
      case 'quota':
        statusCode = 502
        retryAfter = Math.ceil(msUntilQuotaReset(now) / 1000)
        break
      default: statusCode = 502 // token (rejected again after the retry), transient
    }
  } else if (code === 'FST_WECHAT_TOKEN' && typeof err.retryAfter === 'number') {
    // the token endpoint is not asked again before then (token-hold.ts): say so, as a 503 may
    retryAfter = Math.ceil(err.retryAfter / 1000)
  }
  const body = base(statusCode, code, String(err.message))
  if (typeof err.errcode === 'number') body.errcode = err.errcode
  if (typeof err.errmsg === 'string') body.errmsg = err.errmsg
  if (typeof err.rid === 'string') body.rid = err.rid
  const id = typeof err.messageId === 'string' ? err.messageId : maybeQueuedId(err)
  if (id !== undefined) body.id = id
  if (err.outcome === 'failed' || err.outcome === 'unknown') body.outcome = err.outcome
  if (Array.isArray(err.violations)) body.violations = err.violations as ErrorReplyType['violations']
  return { statusCode, body, retryAfter, level: statusCode >= 500 ? (statusCode === 500 ? 'error' : 'warn') : 'info' }
}

function bodyMessage (code: string, bodyLimit: number | undefined): string {
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return 'body must be JSON (application/json)'
  return bodyLimit === undefined ? 'body too large' : `body too large (limit ${bodyLimit} bytes)`
}

function base (statusCode: number, code: string, message: string): ErrorReplyType {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message }
}

export function sendError (reply: FastifyReply, mapped: MappedError): FastifyReply {
  if (mapped.retryAfter !== undefined) reply.header('retry-after', String(mapped.retryAfter))
  // The type is set explicitly: a failing dashboard may already have said text/html.
  return reply.code(mapped.statusCode).type('application/json; charset=utf-8').send(mapped.body)
}

/** What a 5xx other than 500 says in the log, by code: not every one is WeChat's (upstream) fault. */
const UNAVAILABLE: Record<string, string> = {
  FST_WECHAT_QUEUE: 'the queue is unavailable (off, or its Redis)',
  FST_WECHAT_STORE: 'the store is unavailable'
}

export function logError (log: FastifyBaseLogger, err: unknown, mapped: MappedError): void {
  const fields = { statusCode: mapped.statusCode, code: mapped.body.code, errcode: mapped.body.errcode }
  // (the routes' own hooks are the app's: a routes.onRequest that throws a plain error lands here too)
  if (mapped.level === 'error') log.error({ err }, 'wechat routes: unexpected error (thrown by a hook of the app, such as routes.onRequest, or a bug in fastify-wechat-push)')
  else if (mapped.level === 'warn') log.warn(fields, `wechat routes: ${UNAVAILABLE[mapped.body.code ?? ''] ?? 'upstream failure'}`)
  else log.info(fields, 'wechat routes: request refused')
}

/**
 * The id of the one message an error says may be queued all the same (FST_WECHAT_QUEUE's `messageIds`:
 * an add cut off, or not answered in time); undefined when it names none, or several.
 */
export function maybeQueuedId (input: unknown): string | undefined {
  const ids = (input as AnyError | null)?.messageIds
  return Array.isArray(ids) && ids.length === 1 && typeof ids[0] === 'string' ? ids[0] : undefined
}

/** A batch item's error: coded errors speak for themselves, anything else is logged and hidden. */
export function itemError (err: unknown, log: FastifyBaseLogger): { code: string, message: string } {
  const code = (err as AnyError | null)?.code
  if (typeof code === 'string' && code.startsWith('FST_WECHAT_')) return { code, message: String((err as Error).message) }
  log.error({ err }, 'wechat routes: unexpected error in a batch item (a bug in fastify-wechat-push)')
  return { code: 'FST_WECHAT_INTERNAL', message: INTERNAL_MESSAGE }
}
