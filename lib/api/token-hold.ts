import { WechatTokenError } from '../errors.js'
import type { Clock } from '../options.js'
import { msUntilQuotaReset } from './quota.js'
import { RATE_LIMIT_DELAY_MS } from './errcodes.js'
import type { TokenErrorInstance } from './token-endpoint.js'

/** The longest wait between two asks while WeChat keeps refusing (WECHAT.md §1.3 "no"). */
export const MAX_REFUSAL_HOLD_MS = 5 * 60_000
/** Refusals in a row asked for at once, each (a fault that clears, an operator fixing the setup, a test of each errcode). */
export const FREE_REFUSALS = 20
/** The wait after the first refusal beyond those; it doubles with each further one. */
export const FIRST_REFUSAL_HOLD_MS = 1000

/** When the refusal a held copy repeats came (Date.now() ms): no call was made for the copy itself. */
const refusedAt = new WeakMap<object, number>()

/** For a held copy (`held: true`), when WeChat gave the refusal it repeats (Date.now() ms); else undefined. */
export function heldRefusalAt (error: unknown): number | undefined {
  return error !== null && typeof error === 'object' ? refusedAt.get(error) : undefined
}

/** How every FST_WECHAT_TOKEN message starts (errors.ts): a held copy's detail is what follows. */
const TOKEN_MESSAGE_START = new WechatTokenError('').message

/**
 * When WeChat keeps refusing token fetches in a way an immediate retry cannot change (WECHAT.md
 * §1.3: configuration, 45011, 45009), the token endpoint is asked less and less often, and callers
 * meanwhile get the last refusal at once. Without this, each send asked again, and a busy app with
 * an IP missing from the whitelist spent the endpoint's daily quota in minutes (and then had 45009
 * for the rest of the day once it was fixed).
 * - The first FREE_REFUSALS in a row are asked for each time; from the next, 1 s doubling up to 5
 *   min, so a broken setup asks a few hundred times a day at most.
 * - 45011 and 45009 (an ordinary fetch's daily quota) say when asking again makes sense
 *   (`retryAfter`: 60 s, or until the quota resets): held that long from the first one (the queue
 *   waits as long: sender.ts); resumeQueue() ends a 45009's hold (the quota was cleared). A
 *   force_refresh's 45009 is only its 20-a-day limit: ordinary fetches still work.
 * - -1 and network failures are transient: never counted (the fetch itself backs off).
 * A fetched token ends it all.
 */
export class TokenHold {
  private until = 0
  private error: TokenErrorInstance | null = null
  /** Date.now() when the held refusal came */
  private since = 0
  private refusals = 0

  constructor (private readonly clock: Clock) {}

  /** Throws the held error (a copy saying until when) while the hold lasts. */
  check (): void {
    const error = this.error
    if (error === null) return
    const left = this.until - this.clock.now()
    if (left <= 0) return
    // (the held error's own detail: its message already starts with the code's text, which the copy adds again)
    const detail = error.message.startsWith(TOKEN_MESSAGE_START) ? error.message.slice(TOKEN_MESSAGE_START.length) : error.message
    const copy = new WechatTokenError(`${detail}; not asked again for ${Math.ceil(left / 1000)} s`) as TokenErrorInstance
    if (error.errcode !== undefined) copy.errcode = error.errcode
    if (error.errmsg !== undefined) copy.errmsg = error.errmsg
    if (error.rid !== undefined) copy.rid = error.rid
    copy.retryable = error.retryable
    copy.retryAfter = left
    copy.held = true
    refusedAt.set(copy, this.since)
    throw copy
  }

  /** A fetch failed with `error` (forced: it was a force_refresh). Sets the error's retryAfter when it says when to ask again. */
  failed (error: TokenErrorInstance, forced: boolean): void {
    const holdMs = this.holdFor(error, forced)
    if (holdMs <= 0) return
    this.until = this.clock.now() + holdMs
    this.error = error
    this.since = Date.now()
    error.retryAfter = Math.max(error.retryAfter ?? 0, holdMs)
  }

  /** resumeQueue(): the daily quotas were reset (clear_quota), so a 45009's hold ends. */
  quotaReset (): void {
    if (this.error?.errcode === 45009) this.until = 0
  }

  succeeded (): void {
    this.refusals = 0
    this.until = 0
    this.error = null
  }

  private holdFor (error: TokenErrorInstance, forced: boolean): number {
    const errcode = error.errcode
    if (errcode === undefined || errcode === -1) return 0
    // a force_refresh's 45009 is only its 20-a-day limit: not a refusal of the token endpoint
    if (errcode === 45009 && forced) return 0
    this.refusals++
    // WeChat says when: 45011 after the minute, 45009 once the day's quota resets (WECHAT.md §1.3).
    // Asking sooner only meets the same answer (and 45011 asks to slow down): held from the first.
    if (errcode === 45011) return (error.retryAfter = RATE_LIMIT_DELAY_MS)
    if (errcode === 45009) return (error.retryAfter = msUntilQuotaReset(this.clock.now()))
    if (this.refusals <= FREE_REFUSALS) return 0
    return Math.min(MAX_REFUSAL_HOLD_MS, FIRST_REFUSAL_HOLD_MS * 2 ** (this.refusals - FREE_REFUSALS - 1))
  }
}
