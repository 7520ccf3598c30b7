import { randomBytes } from 'node:crypto'
import type { SimulatorClock } from './clock.js'
import type { SimTokenFetches } from './types.js'

/** Which API issued a token. Tokens of the two kinds never affect each other (WECHAT.md §1.2). */
export type TokenKind = 'classic' | 'stable'

/** Outcome of checking a business call's `access_token`. */
export type TokenCheck = 'ok' | 'missing' | 'malformed' | 'unknown' | 'superseded' | 'expired'

/** What a token endpoint answers on success. */
export interface IssuedToken {
  token: string
  expiresIn: number
}

interface TokenRecord {
  token: string
  kind: TokenKind
  expiresAt: number
  /** When the token stops working because it was superseded or invalidated (40001). */
  cutoffAt?: number
}

/** Shape of every token the simulator issues: `NN_` + 136 url-safe characters. */
export const TOKEN_FORMAT = /^\d{2,3}_[A-Za-z0-9_-]{100,}$/

const OVERLAP_MS = 300_000
const FORCE_GAP_MS = 30_000
const FORCE_PER_DAY = 20
const CHINA_OFFSET_MS = 8 * 3_600_000
const DAY_MS = 86_400_000

/**
 * Issues and checks access tokens: classic (`cgi-bin/token`, each fetch supersedes the previous token
 * after a 5-minute overlap) and stable (`stable_token`, same token until its last 5 minutes, force
 * refresh limited to 20 a day, 30 s apart). Daily limits reset at midnight China time (UTC+8).
 */
export class TokenIssuer {
  readonly #clock: SimulatorClock
  readonly #ttlMs: number
  readonly #records = new Map<string, TokenRecord>()
  #latestClassic: TokenRecord | undefined
  #currentStable: TokenRecord | undefined
  #forceDay = -1
  #forceCount = 0
  #lastForceAt: number | undefined
  #fetches: SimTokenFetches = { token: 0, stable_token: 0, force_refresh: 0 }

  constructor (clock: SimulatorClock, ttlSeconds: number) {
    this.#clock = clock
    this.#ttlMs = ttlSeconds * 1000
  }

  /** Counts of new tokens issued so far. */
  fetches (): SimTokenFetches {
    return { ...this.#fetches }
  }

  /** The newest token of a kind, if any was issued. */
  current (kind: TokenKind): string | undefined {
    return (kind === 'classic' ? this.#latestClassic : this.#currentStable)?.token
  }

  /** `cgi-bin/token`: always a new token; the previous one keeps working for 5 more minutes. */
  issueClassic (): IssuedToken {
    const now = this.#clock.now()
    if (this.#latestClassic !== undefined) cutOff(this.#latestClassic, now + OVERLAP_MS)
    this.#latestClassic = this.#issue('classic', now)
    this.#fetches.token++
    return { token: this.#latestClassic.token, expiresIn: this.#ttlMs / 1000 }
  }

  /**
   * `stable_token`. Normal mode returns the current token while it has more than 5 minutes left, else a
   * new one. Force mode kills every live stable token and issues a new one, unless the last force
   * refresh was under 30 s ago (then it acts like normal mode); the 21st force refresh of a day is 45009.
   * @returns the token, or `45009` when the daily force-refresh quota is used up
   */
  issueStable (force: boolean): IssuedToken | 45009 {
    const now = this.#clock.now()
    if (force && (this.#lastForceAt === undefined || now - this.#lastForceAt >= FORCE_GAP_MS)) {
      const day = Math.floor((now + CHINA_OFFSET_MS) / DAY_MS)
      if (day !== this.#forceDay) {
        this.#forceDay = day
        this.#forceCount = 0
      }
      if (this.#forceCount >= FORCE_PER_DAY) return 45009
      this.#forceCount++
      this.#lastForceAt = now
      for (const record of this.#records.values()) {
        if (record.kind === 'stable') cutOff(record, now)
      }
      this.#currentStable = this.#issue('stable', now)
      this.#fetches.force_refresh++
      return { token: this.#currentStable.token, expiresIn: this.#ttlMs / 1000 }
    }
    const current = this.#currentStable
    // (a lifetime shorter than the real 7200 s, tokenTtlSeconds, keeps the window to half of it: a
    // window as long as the lifetime would hand out a new token on every call)
    if (current !== undefined && status(current, now) === 'ok' && current.expiresAt - now > Math.min(OVERLAP_MS, this.#ttlMs / 2)) {
      return { token: current.token, expiresIn: Math.floor((current.expiresAt - now) / 1000) }
    }
    this.#currentStable = this.#issue('stable', now)
    this.#fetches.stable_token++
    return { token: this.#currentStable.token, expiresIn: this.#ttlMs / 1000 }
  }

  /** Checks a business call's token. */
  check (token: string | undefined): TokenCheck {
    if (token === undefined || token === '') return 'missing'
    if (!TOKEN_FORMAT.test(token)) return 'malformed'
    const record = this.#records.get(token)
    return record === undefined ? 'unknown' : status(record, this.#clock.now())
  }

  /** Every live token expires now (42001; dead ones keep their error); the next normal stable call issues a new one. */
  expireAll (): void {
    const now = this.#clock.now()
    for (const record of this.#records.values()) {
      if (status(record, now) === 'ok') record.expiresAt = now
    }
  }

  /** Every live token is invalid now (40001; dead ones keep their error); the next normal stable call issues a new one. */
  invalidateAll (): void {
    const now = this.#clock.now()
    for (const record of this.#records.values()) {
      if (status(record, now) === 'ok') cutOff(record, now)
    }
  }

  /** clear_quota (§8.1): today's force refreshes are forgotten (the 30 s spacing still holds). */
  clearForceBudget (): void {
    this.#forceCount = 0
  }

  /** Forgets every token, the force-refresh budget and the fetch counts. */
  reset (): void {
    this.#records.clear()
    this.#latestClassic = undefined
    this.#currentStable = undefined
    this.#forceDay = -1
    this.#forceCount = 0
    this.#lastForceAt = undefined
    this.#fetches = { token: 0, stable_token: 0, force_refresh: 0 }
  }

  #issue (kind: TokenKind, now: number): TokenRecord {
    const record: TokenRecord = { token: `86_${randomBytes(102).toString('base64url')}`, kind, expiresAt: now + this.#ttlMs }
    this.#records.set(record.token, record)
    return record
  }
}

function cutOff (record: TokenRecord, at: number): void {
  record.cutoffAt = Math.min(record.cutoffAt ?? at, at)
}

/** Whichever came first, expiry (42001) or cut-off (40001), decides a dead token's error. */
function status (record: TokenRecord, now: number): TokenCheck {
  const cutoffAt = record.cutoffAt ?? Infinity
  if (now < record.expiresAt && now < cutoffAt) return 'ok'
  return record.expiresAt <= cutoffAt ? 'expired' : 'superseded'
}
