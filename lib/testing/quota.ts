import type { SimulatorClock } from './clock.js'

/** What getApiQuota answers for an API (WECHAT.md §8.1). */
export interface SimApiQuota {
  daily_limit: number
  used: number
  remain: number
}

/** clear_quota and clear_quota/v2 share 10 resets per month per account (WECHAT.md §8.1); the 11th is 48006. */
export const CLEARS_PER_MONTH = 10
/** subscribe/send's daily limit when `sendQuota` is not given: WECHAT.md documents none, so a large one. */
export const DEFAULT_SEND_QUOTA = 10_000_000

/**
 * The token endpoints' daily limits getApiQuota reports (WECHAT.md §1.1: 2000/day for cgi-bin/token,
 * UNCERTAIN, some report 10,000; §8 table: 500,000/day for stable_token). Reported, not enforced.
 */
export const TOKEN_DAILY_LIMITS = { '/cgi-bin/token': 2000, '/cgi-bin/stable_token': 500_000 } as const
export type TokenCgiPath = keyof typeof TOKEN_DAILY_LIMITS

const CHINA_OFFSET_MS = 8 * 3_600_000
const DAY_MS = 86_400_000

/**
 * The daily quota of subscribe/send (45009 once used up), the token endpoints' daily counts (reported
 * only) and the monthly allowance of quota resets.
 * Days and months are China time (UTC+8), as the force-refresh budget's (WECHAT.md §8.1 UNCERTAIN:
 * the reset clock is presumably China time).
 */
export class QuotaBook {
  #day = -1
  #sendUsed = 0
  #tokenUsed: Record<TokenCgiPath, number> = { '/cgi-bin/token': 0, '/cgi-bin/stable_token': 0 }
  #month = ''
  #clears = 0

  constructor (private readonly clock: SimulatorClock, readonly sendLimit: number) {}

  /** One subscribe/send call against today's quota: false (45009) once it is used up; a refused call uses none. */
  useSend (): boolean {
    this.#rollDay()
    if (this.#sendUsed >= this.sendLimit) return false
    this.#sendUsed++
    return true
  }

  /** getApiQuota's `quota` for subscribe/send. */
  sendQuota (): SimApiQuota {
    this.#rollDay()
    return { daily_limit: this.sendLimit, used: this.#sendUsed, remain: Math.max(0, this.sendLimit - this.#sendUsed) }
  }

  /** One token fetch that passed the credential checks, counted for getApiQuota. */
  useToken (path: TokenCgiPath): void {
    this.#rollDay()
    this.#tokenUsed[path]++
  }

  /** getApiQuota's `quota` for a token endpoint (§1.1: "query the real value with getApiQuota"). */
  tokenQuota (path: TokenCgiPath): SimApiQuota {
    this.#rollDay()
    const limit = TOKEN_DAILY_LIMITS[path]
    const used = this.#tokenUsed[path]
    return { daily_limit: limit, used, remain: Math.max(0, limit - used) }
  }

  /** A quota reset: today's counts start again, unless this month's allowance is used up (false: 48006). */
  clear (): boolean {
    const month = new Date(this.clock.now() + CHINA_OFFSET_MS).toISOString().slice(0, 7)
    if (month !== this.#month) {
      this.#month = month
      this.#clears = 0
    }
    if (this.#clears >= CLEARS_PER_MONTH) return false
    this.#clears++
    this.#zeroDay()
    return true
  }

  /** sim.reset(): today's counts and this month's resets are forgotten. */
  reset (): void {
    this.#day = -1
    this.#zeroDay()
    this.#month = ''
    this.#clears = 0
  }

  #rollDay (): void {
    const day = Math.floor((this.clock.now() + CHINA_OFFSET_MS) / DAY_MS)
    if (day !== this.#day) {
      this.#day = day
      this.#zeroDay()
    }
  }

  #zeroDay (): void {
    this.#sendUsed = 0
    this.#tokenUsed = { '/cgi-bin/token': 0, '/cgi-bin/stable_token': 0 }
  }
}
