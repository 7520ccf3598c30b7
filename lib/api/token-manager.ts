import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { WechatTokenError } from '../errors.js'
import type { EmitLifecycle } from '../lifecycle.js'
import type { Clock } from '../options.js'
import { LateUndo } from '../store/late-undo.js'
import type { TokenRecord, WechatStore } from '../store/types.js'
import { sharedAbortController } from './abort.js'
import { sleep } from './backoff.js'
import type { WechatHttpClient } from './http-client.js'
import type { TokenEndpointOptions, TokenErrorInstance } from './token-endpoint.js'
import { RefusedToken } from './refused-token.js'
import { StoreGuard } from './store-guard.js'
import { TokenFetcher } from './token-fetcher.js'
import type { FetchRequest } from './token-fetcher.js'

/** A token with less than this left is not handed to a request: it could expire in flight. */
const MIN_REMAINING_MS = 30_000
/** stable_token renews only in a token's last 5 minutes (WECHAT.md §1.2): asking earlier returns the same one. */
const STABLE_RENEWAL_WINDOW_MS = 300_000

export interface TokenManagerOptions {
  http: WechatHttpClient
  endpoint: TokenEndpointOptions
  store: WechatStore
  clock: Clock
  refreshAheadMs: number
  timeout: number
  retry: { attempts: number, minDelay: number, maxDelay: number }
  log: FastifyBaseLogger
  /** token:fetched and token:error (lib/lifecycle.ts) */
  emit?: EmitLifecycle
}

interface RefreshRequest extends FetchRequest {
  /** the scheduled job: renew when less than refreshAhead is left, not just when expiring */
  ahead?: boolean
}

/**
 * Owns the access_token (DESIGN.md "Token rules"). Two tiers: `local`, read on every send with no
 * Redis command, over the shared store. One fetch per token generation fleet-wide: an in-process
 * single flight (`inflight`) plus the store's lock; waiters read the winner's token from the store.
 */
export class TokenManager {
  private local: TokenRecord | null = null
  private inflight: Promise<TokenRecord> | null = null
  private readonly guard: StoreGuard
  /** a refused token WeChat still hands out: force_refresh within budget, else used again */
  private readonly refusedToken: RefusedToken
  private readonly stop = sharedAbortController()
  /** asks WeChat's token endpoint (retries, holds, force_refresh): token-fetcher.ts */
  private readonly fetcher: TokenFetcher

  constructor (private readonly options: TokenManagerOptions) {
    this.guard = new StoreGuard(options.store, options.log)
    this.refusedToken = new RefusedToken(options.clock, options.log)
    this.fetcher = new TokenFetcher(options, this.guard, this.refusedToken, this.stop.signal)
  }

  /** The hot path: a valid in-process token costs nothing but this comparison. */
  async getToken (forceRefresh = false): Promise<string> {
    const local = this.local
    if (forceRefresh) {
      if (local === null) return (await this.refresh({})).token
      // (said again of a token just refused and handed out as current: what a call refused twice does)
      return this.refusedToken.stillCurrent(local.token) ? this.refusedAgain(local.token) : this.rejected(local.token)
    }
    if (local && this.goodForRequests(local)) return local.token
    return (await this.refresh({})).token
  }

  /** The in-process token when it is good for a request, without a promise (the send path's fast path). */
  current (): string | undefined {
    const local = this.local
    return local && this.goodForRequests(local) ? local.token : undefined
  }

  /** A business call answered 40001/40014/42001 with `token`: drop exactly that one and get another. */
  async rejected (token: string): Promise<string> {
    // (refused again while force_refresh is not allowed: retried with it, without another fetch)
    if (this.refusedToken.stillCurrent(token)) return token
    if (this.local?.token === token) this.local = null
    return (await this.refresh({ rejected: token })).token
  }

  /**
   * A call retried with `token` after stable_token handed it out as current (`rejected` returned it)
   * was refused again: WeChat "keeps returning the token that just failed" (WECHAT.md §1.5), so
   * force_refresh replaces it, within the fleet's budget; otherwise, or if the force_refresh fails,
   * the same token comes back and the call ends with its refusal. Classic mode never gets here
   * (each fetch there is a new token).
   */
  async refusedAgain (token: string): Promise<string> {
    const local = this.local
    if (this.options.endpoint.mode !== 'stable') return local?.token ?? token
    // (a force_refresh just found not allowed, or failed: the next refusals are answered without a fetch)
    if (this.refusedToken.forceBlocked(token)) return token
    // (replaced meanwhile: by the force of another call refused in the same burst, or another instance)
    if (local !== null && local.token !== token && this.goodForRequests(local)) return local.token
    if (local?.token === token) this.local = null
    return (await this.refresh({ rejected: token, force: true })).token
  }

  /** resumeQueue(): the daily quotas were cleared, so a fetch held for a 45009 may ask again. */
  quotaReset (): void {
    this.fetcher.quotaReset()
  }

  /**
   * The scheduled job's work, callable directly: pick up a token another instance stored, share ours
   * if the store lost it (Redis restarted), and renew ahead of expiry so requests never wait.
   */
  async refreshIfDue (): Promise<void> {
    await this.syncWithStore()
    const local = this.local
    if (!local || local.expiresAt - this.options.clock.now() <= this.aheadMs(local)) await this.refresh({ ahead: true })
  }

  /** What this process holds, for status pages and tests (never the token itself). */
  snapshot (): { expiresAt: number | null, storeAvailable: boolean, fetches: number } {
    return { expiresAt: this.local?.expiresAt ?? null, storeAvailable: this.guard.available, fetches: this.fetcher.fetches }
  }

  close (): void {
    this.stop.abort()
    this.lateLock.close()
  }

  /**
   * When the scheduled job renews `record`: refreshAhead before its end, at most half its lifetime
   * (a token given with a short expires_in, as a test double may, would otherwise be renewed on every
   * tick of the job).
   */
  private aheadMs (record: TokenRecord): number {
    const ahead = this.options.refreshAheadMs
    const wanted = this.options.endpoint.mode === 'stable' ? Math.min(ahead, STABLE_RENEWAL_WINDOW_MS) : ahead
    const lifetime = lifetimeMs(record)
    return lifetime === undefined ? wanted : Math.min(wanted, lifetime / 2)
  }

  private goodForRequests (record: TokenRecord): boolean {
    return record.expiresAt - this.options.clock.now() > minRemainingMs(record)
  }

  private refresh (request: RefreshRequest): Promise<TokenRecord> {
    if (this.inflight) {
      // Join the flight in progress; start another only if it produced the very token that was refused.
      // (not when WeChat handed that token out again and force_refresh is not allowed: refused-token.ts)
      return this.inflight.then((record) => request.rejected !== undefined && record.token === request.rejected && !this.refusedToken.stillCurrent(record.token) ? this.refresh(request) : record)
    }
    const flight = this.doRefresh(request).finally(() => { this.inflight = null })
    this.inflight = flight
    return flight
  }

  private usable (record: TokenRecord | null | undefined, request: RefreshRequest): record is TokenRecord {
    if (!record || record.token === request.rejected) return false
    const need = request.ahead ? Math.max(this.aheadMs(record), minRemainingMs(record)) : minRemainingMs(record)
    return record.expiresAt - this.options.clock.now() > need
  }

  private adopt (record: TokenRecord): TokenRecord {
    this.local = record
    return record
  }

  private async doRefresh (request: RefreshRequest): Promise<TokenRecord> {
    const stored = await this.guard.attempt((s) => s.getToken())
    if (this.usable(stored, request)) return this.adopt(stored)
    if (request.rejected !== undefined) {
      const rejected = request.rejected
      await this.guard.attempt((s) => s.dropToken(rejected))
    }
    if (!this.guard.available) return this.adopt(await this.fetcher.fetch(request))

    const lockTtl = this.lockTtlMs()
    const deadline = Date.now() + lockTtl + this.options.timeout
    let wait = 10
    while (!this.stop.signal.aborted) {
      // (an owner per try: a late release of one lock must never free a later one of ours)
      const owner = randomUUID()
      const locked = await this.guard.attempt((s) => s.acquireLock(owner, lockTtl))
      if (locked === undefined) return this.fetchWithoutLock(request, lockTtl, owner)
      if (locked) return this.fetchUnderLock(request, owner)
      await sleep(wait, this.stop.signal)
      wait = Math.min(wait * 2, 200)
      const seen = await this.guard.attempt((s) => s.getToken())
      if (this.usable(seen, request)) return this.adopt(seen)
      if (Date.now() > deadline) break
    }
    throw this.tokenError(this.stop.signal.aborted ? 'the plugin is closing' : 'timed out waiting for another instance to fetch the token')
  }

  /**
   * The store did not answer the lock: fetch anyway (a send must not wait on Redis). A stalled Redis
   * may still take the lock when it wakes, and the fleet would wait for a token nobody stores until
   * the lock expired (25 s seen in an audit): once the store answers, the token is stored and our
   * lock let go (compare-and-delete on the owner: harmless if it never landed).
   */
  private async fetchWithoutLock (request: RefreshRequest, lockTtl: number, owner: string): Promise<TokenRecord> {
    let record: TokenRecord | undefined
    try {
      record = this.adopt(await this.fetcher.fetch(request))
      return record
    } finally {
      const store = this.options.store
      const fetched = record
      this.lateLock.run(async () => {
        // Both go out together, in order: the token (only while it is still ours, not one refused
        // since), then the release. One that went out and timed out runs when the store wakes.
        const sent = await Promise.allSettled([
          fetched !== undefined && this.local?.token === fetched.token ? store.putTokenIfNewer(fetched) : undefined,
          store.releaseLock(owner)
        ])
        const unsent = sent.find((result): result is PromiseRejectedResult => result.status === 'rejected' && (result.reason as { sent?: boolean }).sent !== true)
        if (unsent !== undefined) throw unsent.reason
      }, lockTtl).catch(() => {})
    }
  }

  /** locks this instance may hold without knowing (fetchWithoutLock), let go once the store answers */
  private readonly lateLock = new LateUndo()

  private async fetchUnderLock (request: RefreshRequest, owner: string): Promise<TokenRecord> {
    try {
      // Another instance may have finished between our read and our lock.
      const again = await this.guard.attempt((s) => s.getToken())
      if (this.usable(again, request)) return this.adopt(again)
      const record = await this.fetcher.fetch(request)
      await this.guard.attempt((s) => s.putTokenIfNewer(record))
      return this.adopt(record)
    } finally {
      await this.guard.attempt((s) => s.releaseLock(owner))
    }
  }

  /** Long enough for one full fetch with its retries; a dead holder's lock frees itself after it. */
  private lockTtlMs (): number {
    const { attempts, maxDelay } = this.options.retry
    return attempts * (this.options.timeout + maxDelay) + 2 * this.options.timeout
  }

  private tokenError (reason: string): TokenErrorInstance {
    const error = new WechatTokenError(reason) as TokenErrorInstance
    error.retryable = true
    return error
  }

  private async syncWithStore (): Promise<void> {
    const stored = await this.guard.attempt((s) => s.getToken())
    if (!this.guard.available) return
    const local = this.local
    if (stored && (!local || (stored.token !== local.token && stored.expiresAt > local.expiresAt))) {
      this.local = stored
    } else if (!stored && local && this.goodForRequests(local)) {
      await this.guard.attempt((s) => s.putTokenIfNewer(local))
    }
  }
}

/** How long WeChat gave `record` (its expires_in), when the record says. */
function lifetimeMs (record: TokenRecord): number | undefined {
  const lifetime = record.expiresAt - record.fetchedAt
  return Number.isFinite(lifetime) && lifetime > 0 ? lifetime : undefined
}

/**
 * Less than this left and `record` is not handed to a request: MIN_REMAINING_MS, or a quarter of a
 * short lifetime (with expires_in under 30 s every request would otherwise fetch a token).
 */
function minRemainingMs (record: TokenRecord): number {
  const lifetime = lifetimeMs(record)
  return lifetime === undefined ? MIN_REMAINING_MS : Math.min(MIN_REMAINING_MS, lifetime / 4)
}
