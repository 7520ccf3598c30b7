import type { FastifyBaseLogger } from 'fastify'
import type { Clock } from '../options.js'
import { MemoryStore } from '../store/memory.js'
import { chinaDay } from '../store/types.js'
import type { WechatStore } from '../store/types.js'

/** How long a refused token WeChat still hands out is used again without a fetch (force_refresh's spacing). */
const REFUSED_RECHECK_MS = 30_000

/**
 * A stable token WeChat refused (40001/40014/42001) while stable_token still hands it out (WECHAT.md
 * §1.2, §1.5). force_refresh kills the token at once for every holder of it and WeChat allows 20 a
 * day, "only when a token has leaked"; so it is used "only if the normal call keeps returning the token
 * that just failed": the first refusal is retried with the token (a stray 40001 then costs nothing),
 * and only a call refused again with it, just confirmed current, forces (`mayForce`), within the
 * fleet's budget (20 a day, 30 s apart, counted in the store; in process while the store is down).
 * For REFUSED_RECHECK_MS after a confirmation, refusals of that token are retried with it without
 * asking the token endpoint (a burst of refused calls would each cost a fetch answering it once more).
 */
export class RefusedToken {
  /** used for the force_refresh budget when the shared store is down */
  private readonly fallbackBudget: MemoryStore
  private reused: { token: string, until: number, forceBlocked: boolean } | null = null
  /** the China day WeChat itself refused a force_refresh (45009): none is asked for again that day */
  private refusedDay = ''

  constructor (private readonly clock: Clock, private readonly log: FastifyBaseLogger) {
    this.fallbackBudget = new MemoryStore(clock)
  }

  /** Whether `token` is one WeChat refused and just handed out again: used as it is for now. */
  stillCurrent (token: string): boolean {
    const reused = this.reused
    return reused !== null && reused.token === token && this.clock.now() < reused.until
  }

  /** stable_token handed out again the token a call was refused with: the call is retried with it. */
  confirmed (token: string): void {
    if (!this.stillCurrent(token)) this.log.warn('wechat: the stable token was refused while WeChat still hands it out; retrying with it (force_refresh only if it is refused again)')
    this.reuse(token, false)
  }

  /** Whether a force_refresh of `token` was just found not allowed (or failed): refusals of it are answered as they are, without a fetch. */
  forceBlocked (token: string): boolean {
    return this.stillCurrent(token) && (this.reused as { forceBlocked: boolean }).forceBlocked
  }

  /** Whether a force_refresh may replace `token` now (`store`: the shared budget, null while it is down). */
  async mayForce (token: string, store: WechatStore | null): Promise<boolean> {
    const now = this.clock.now()
    if (this.refusedDay === chinaDay(now)) return this.notNow(token, 'WeChat refused a force_refresh today (45009)')
    const verdict = await (store ?? this.fallbackBudget).takeForceRefresh(now).catch(() => this.fallbackBudget.takeForceRefresh(now))
    if (verdict.allowed) {
      this.log.warn('wechat: the stable token was refused again after WeChat handed it out as current; using one force_refresh')
      return true
    }
    // WeChat's own token endpoint says it is current: the call ends with its refusal, and the token
    // stays in use; once this ends, the next refusal may force.
    return this.notNow(token, verdict.reason === 'daily' ? '20 a day used' : 'less than 30 s since the last one')
  }

  /**
   * The force_refresh itself failed (WeChat's 45009: its own count of 20 a day, which other clients of
   * the AppID share, is used up; or the endpoint did not answer): the token WeChat still hands out
   * stays in use rather than the call failing on a fetch (an audit found every stray 40001 failing
   * with FST_WECHAT_TOKEN 45009 once the day's force refreshes were gone).
   */
  forceFailed (token: string, errcode: number | undefined): void {
    if (errcode === 45009) this.refusedDay = chinaDay(this.clock.now())
    this.reuse(token, true)
  }

  private notNow (token: string, reason: string): false {
    this.log.warn({ reason }, 'wechat: the stable token was refused again while WeChat still hands it out, and force_refresh is not allowed now; it stays in use')
    this.reuse(token, true)
    return false
  }

  private reuse (token: string, forceBlocked: boolean): void {
    this.reused = { token, until: this.clock.now() + REFUSED_RECHECK_MS, forceBlocked }
  }
}
