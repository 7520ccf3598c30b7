import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { thrownText, WechatApiError } from '../errors.js'
import type { ErrorClass, WechatApiErrorInstance } from '../errors.js'
import { backoffDelay, sleep } from '../api/backoff.js'
import { classifyErrcode, isRetryableClass, RATE_LIMIT_DELAY_MS } from '../api/errcodes.js'
import type { UpstreamFields } from '../api/http-client.js'
import { subscribeSend } from '../api/subscribe.js'
import type { WireMessage } from '../api/subscribe.js'
import type { TokenErrorInstance } from '../api/token-endpoint.js'
import { heldRefusalAt } from '../api/token-hold.js'
import type { WechatApi } from '../api/wechat-api.js'
import { systemClock } from '../options.js'
import type { Clock, ResolvedOptions } from '../options.js'
import { msUntilQuotaReset } from '../api/quota.js'
import type { ValueChange } from './message.js'
import { NO_CONSENT_ERRCODE } from '../store/records.js'

export interface SendResult {
  id: string
  /** WeChat's message id as a decimal string (it exceeds 2^53), when WeChat returned one */
  msgid?: string
  /** what `validation: 'truncate'` changed before sending */
  changes?: ValueChange[]
  /** the idempotency key was used before: this is the first message's result, nothing was sent */
  duplicate?: true
}

export interface AttemptOptions {
  /** total attempts for transient failures (-1, 5xx, network); the queue uses 1 and retries itself */
  attempts: number
  signal?: AbortSignal
  /** an earlier try (a previous queue attempt) already ended ambiguously */
  ambiguous?: boolean
}

/** The outcome of one delivery try, for records and stats. */
export interface DeliveryOutcome {
  status: 'sent' | 'failed' | 'unknown'
  attempts: number
  msgid?: string
  errcode?: number
  errmsg?: string
  errorClass?: ErrorClass
  error?: Error
  /** some attempt may have reached WeChat without an answer (timeout, reset, 5xx) */
  ambiguous: boolean
  /** the token endpoint is not asked again before this many ms (token-hold.ts): a retry sooner is pointless */
  retryAfterMs?: number
  /** a held token refusal (no call now): when WeChat gave it (Date.now() ms), for the 45009 pause's "before a resume" */
  refusedAt?: number
}

export function newMessageId (): string {
  return randomUUID()
}

/**
 * Calls subscribe/send with the retry rules of DESIGN.md "Error classes": transient errors back off
 * and retry; token errors were already retried once by WechatApi; rate, quota and permanent errors
 * are not retried here. A timeout or 5xx makes the outcome ambiguous: if a later attempt is refused
 * with 43101, the first one probably used the user's subscription, so the message ends `unknown`.
 */
export class Sender {
  constructor (
    private readonly api: WechatApi,
    private readonly retry: ResolvedOptions['retry'],
    private readonly log: FastifyBaseLogger,
    private readonly clock: Clock = systemClock
  ) {}

  async deliver (id: string, wire: WireMessage, options: AttemptOptions): Promise<DeliveryOutcome> {
    let ambiguous = options.ambiguous === true
    for (let attempt = 1; ; attempt++) {
      try {
        // (the signal only for the first attempt: a retry starts after a backoff that checks it)
        const answer = await subscribeSend(this.api, wire, attempt === 1 ? options.signal : undefined)
        // (a fail-over after a timeout or 5xx: that first request may have been delivered)
        if (answer.ambiguous === true) ambiguous = true
        if (answer.errcode === 0) return { status: 'sent', attempts: attempt, msgid: answer.msgid, ambiguous }
        const errorClass = classifyErrcode(answer.errcode)
        const retry = errorClass === 'transient' && attempt < options.attempts && options.signal?.aborted !== true
        // 43101 is the user's choice (no subscription left), counted as "no consent": not an alarm
        this.log[answer.errcode === NO_CONSENT_ERRCODE ? 'info' : 'warn']({ messageId: id, errcode: answer.errcode, rid: answer.rid, attempt, retry }, 'wechat: subscribe/send answered an error')
        if (retry && await this.waitToRetry(attempt, options.signal)) continue
        // After an attempt that may have reached WeChat, only an answer that would have refused the first
        // one too (a permanent error other than 43101) proves it failed; anything else leaves it open.
        const unknown = ambiguous && (answer.errcode === 43101 || errorClass !== 'permanent')
        const error = apiError(id, answer.errcode, answer.errmsg, answer.rid, errorClass, unknown)
        if (errorClass === 'quota') error.retryAfter = msUntilQuotaReset(this.clock.now())
        return { status: unknown ? 'unknown' : 'failed', attempts: attempt, errcode: answer.errcode, errmsg: answer.errmsg, errorClass, error, ambiguous }
      } catch (err) {
        if (attempt === 1 && options.signal?.aborted === true && err === options.signal.reason) {
          // The caller gave up (or the app began to close) while the call waited for a token: no
          // request left, so the message certainly was not sent.
          return { status: 'failed', attempts: 0, errmsg: `aborted before it was sent (${thrownText(err)})`, error: err as Error, ambiguous: false }
        }
        const upstream = err as Error & Partial<UpstreamFields> & { code?: string }
        const isUpstream = upstream.code === 'FST_WECHAT_UPSTREAM'
        if (isUpstream) ambiguous ||= upstream.ambiguous === true
        // Token errors were retried inside the token manager already; only the network is retried here.
        const retry = isUpstream && upstream.refused !== true && attempt < options.attempts && options.signal?.aborted !== true
        const token = upstream as Partial<TokenErrorInstance>
        // a held token error (token-hold.ts) was logged once when WeChat gave it, not once per message
        this.log[token.held === true ? 'debug' : 'warn']({ messageId: id, reason: upstream.message, attempt, retry }, 'wechat: subscribe/send did not complete')
        if (retry && await this.waitToRetry(attempt, options.signal)) continue
        Object.assign(upstream, { messageId: id, outcome: ambiguous ? 'unknown' : 'failed' })
        const outcome: DeliveryOutcome = { status: ambiguous ? 'unknown' : 'failed', attempts: attempt, errorClass: isUpstream ? (upstream.refused === true ? 'permanent' : 'transient') : tokenErrorClass(token), errmsg: upstream.message, error: upstream, ambiguous }
        if (typeof token.errcode === 'number') outcome.errcode = token.errcode
        if (typeof token.retryAfter === 'number') outcome.retryAfterMs = token.retryAfter
        const heldSince = heldRefusalAt(upstream)
        if (heldSince !== undefined) outcome.refusedAt = heldSince
        return outcome
      }
    }
  }

  /**
   * The backoff before the next attempt. False when the caller's signal is aborted during it: no
   * further attempt, and the send ends with this attempt's outcome (sleep() ends early on abort).
   */
  private async waitToRetry (attempt: number, signal: AbortSignal | undefined): Promise<boolean> {
    await sleep(backoffDelay(attempt, this.retry), signal)
    return signal?.aborted !== true
  }
}

/**
 * A direct send not made because sending is paused after a 45009 (send-pause.ts): failed as WeChat's
 * own 45009 would have failed it, with the same code and `retryAfter`, without a call.
 */
export function pausedOutcome (id: string, now: number): DeliveryOutcome {
  const errmsg = 'not sent: sending is paused until the daily quota resets (45009; resumeQueue() ends the pause after clear_quota)'
  const error = apiError(id, QUOTA_ERRCODE, errmsg, undefined, 'quota', false)
  error.retryAfter = msUntilQuotaReset(now)
  return { status: 'failed', attempts: 0, errcode: QUOTA_ERRCODE, errmsg, errorClass: 'quota', error, ambiguous: false }
}

const QUOTA_ERRCODE = 45009

/**
 * The class of a failure to get a token, for the queue: the token endpoint's own 45009 (an ordinary
 * fetch's daily quota, held until it resets) parks the queue as a send's 45009 does, its 45011 waits
 * the minute; anything else is retried after the token hold.
 */
function tokenErrorClass (error: Partial<TokenErrorInstance>): ErrorClass {
  if (error.code !== 'FST_WECHAT_TOKEN') return 'token'
  if (error.errcode === 45011) return 'rate'
  if (error.errcode === 45009 && error.retryAfter !== undefined) return 'quota'
  return 'token'
}

function apiError (id: string, errcode: number, errmsg: string, rid: string | undefined, errorClass: ErrorClass, unknown: boolean): WechatApiErrorInstance {
  const detail = unknown
    ? `errcode ${errcode} after an attempt that timed out or lost its answer: the message may have been delivered (${errmsg})`
    : `errcode ${errcode} (${errmsg || 'no errmsg'})`
  const error = new WechatApiError(detail) as WechatApiErrorInstance
  error.errcode = errcode
  error.errmsg = errmsg
  error.rid = rid
  error.errorClass = errorClass
  error.retryable = isRetryableClass(errorClass)
  error.outcome = unknown ? 'unknown' : 'failed'
  error.messageId = id
  if (errorClass === 'rate') error.retryAfter = RATE_LIMIT_DELAY_MS
  return error
}
