import type { FastifyBaseLogger } from 'fastify'
import type { Clock } from '../options.js'
import { MemoryStore } from '../store/memory.js'
import type { WechatStore } from '../store/types.js'

/** How long a refused token WeChat still hands out is used again without a fetch (force_refresh's spacing). */
const REFUSED_RECHECK_MS = 30_000

/**
 * WeChat refused a stable token that stable_token still hands out (WECHAT.md §1.5): only force_refresh
 * replaces it, within the fleet's budget (20 a day, 30 s apart, counted in the store; in process while
 * the store is down). Outside the budget the token is used again: for REFUSED_RECHECK_MS a refusal of it
 * is not fetched for again, since each fetch returned it once more (every refused call cost a fetch, and
 * callers joining a fetch that answered the token they had refused started the next one, one after another).
 */
export class RefusedToken {
  /** used for the force_refresh budget when the shared store is down */
  private readonly fallbackBudget: MemoryStore
  private reused: { token: string, until: number } | null = null

  constructor (private readonly clock: Clock, private readonly log: FastifyBaseLogger) {
    this.fallbackBudget = new MemoryStore(clock)
  }

  /** Whether `token` is one WeChat refused and hands out again, to be used as it is for now. */
  stillCurrent (token: string): boolean {
    const reused = this.reused
    return reused !== null && reused.token === token && this.clock.now() < reused.until
  }

  /** Whether a force_refresh may replace `token` now (`store`: the shared budget, null while it is down). */
  async mayForce (token: string, store: WechatStore | null): Promise<boolean> {
    const now = this.clock.now()
    const verdict = await (store ?? this.fallbackBudget).takeForceRefresh(now).catch(() => this.fallbackBudget.takeForceRefresh(now))
    if (verdict.allowed) {
      this.log.warn('wechat: the stable token was refused while still current; using one force_refresh')
      return true
    }
    // WeChat's own token endpoint says it is current: the call is retried with it rather than failed
    // untried (a stray 40001 soon after a force_refresh then costs nothing). If WeChat refuses it
    // again, that call's 40001 is the caller's answer; once this ends, the next refusal may force.
    this.log.warn({ reason: verdict.reason === 'daily' ? '20 a day used' : 'less than 30 s since the last one' }, 'wechat: the stable token was refused while still current, and force_refresh is not allowed now; retrying with it')
    this.reused = { token, until: now + REFUSED_RECHECK_MS }
    return false
  }
}
