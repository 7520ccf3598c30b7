import type { FastifyBaseLogger } from 'fastify'
import type { EmitLifecycle } from '../lifecycle.js'
import type { Clock } from '../options.js'
import type { TokenRecord, WechatStore } from '../store/types.js'
import { backoffDelay, sleep } from './backoff.js'
import type { WechatHttpClient } from './http-client.js'
import type { RefusedToken } from './refused-token.js'
import type { StoreGuard } from './store-guard.js'
import { fetchAccessToken } from './token-endpoint.js'
import type { TokenEndpointOptions, TokenErrorInstance } from './token-endpoint.js'
import { TokenHold } from './token-hold.js'

/** What the fetch is for: a refused token it must not hand out again, and whether force_refresh may replace it. */
export interface FetchRequest {
  /** a token WeChat refused: never hand it out again */
  rejected?: string
  /** `rejected` was refused again after stable_token handed it out as current: force_refresh, within budget */
  force?: true
}

export interface TokenFetcherOptions {
  http: WechatHttpClient
  endpoint: TokenEndpointOptions
  store: WechatStore
  clock: Clock
  retry: { attempts: number, minDelay: number, maxDelay: number }
  log: FastifyBaseLogger
  emit?: EmitLifecycle
}

/**
 * One fetch from WeChat's token endpoint for the token manager (token-manager.ts decides when, and
 * shares the result): retried with backoff while WeChat answers -1 or cannot be reached, held while
 * WeChat refuses in a way a prompt retry cannot change (token-hold.ts), and with force_refresh, within
 * the fleet's budget, when stable_token keeps handing out a token WeChat refused (refused-token.ts).
 * Tells `token:fetched` and `token:error`.
 */
export class TokenFetcher {
  /** WeChat refused a fetch in a way an immediate retry cannot change: callers get its error meanwhile */
  private readonly hold: TokenHold
  /** successful calls to WeChat's token endpoint made by this process */
  fetches = 0

  constructor (
    private readonly options: TokenFetcherOptions,
    private readonly guard: StoreGuard,
    private readonly refusedToken: RefusedToken,
    /** close(): a fetch under way ends at once, and its failure is not told */
    private readonly stop: AbortSignal
  ) {
    this.hold = new TokenHold(options.clock)
  }

  /** resumeQueue(): the daily quotas were cleared, so a fetch held for a 45009 may ask again. */
  quotaReset (): void {
    this.hold.quotaReset()
  }

  async fetch (request: FetchRequest): Promise<TokenRecord> {
    // (a held error was told already, when WeChat gave it: no event, no log line per caller)
    this.hold.check()
    try {
      const record = await this.fetchOrForce(request)
      this.hold.succeeded()
      return record
    } catch (err) {
      const error = err as TokenErrorInstance
      // (a fetch cut short by close() is not an error anyone needs to hear of)
      if (!this.stop.aborted) {
        this.options.emit?.('token:error', () => ({
          code: error.code ?? 'FST_WECHAT_TOKEN',
          ...(error.errcode !== undefined ? { errcode: error.errcode } : {}),
          ...(error.rid !== undefined ? { rid: error.rid } : {}),
          message: error.message,
          retryable: error.retryable === true
        }))
      }
      throw err
    }
  }

  private async fetchOrForce (request: FetchRequest): Promise<TokenRecord> {
    let forced = false
    let fetched = await this.fetchWithRetry(false)
    if (this.options.endpoint.mode === 'stable' && request.rejected !== undefined && fetched.token === request.rejected) {
      // WeChat still hands out the token it refused (refused-token.ts): the first time, the call is
      // retried with it; refused again, only force_refresh replaces it (WECHAT.md §1.5).
      if (request.force !== true) {
        this.refusedToken.confirmed(fetched.token)
      } else if (await this.refusedToken.mayForce(fetched.token, this.guard.available ? this.options.store : null)) {
        try {
          fetched = await this.fetchWithRetry(true)
          forced = true
        } catch (err) {
          if (this.stop.aborted) throw err
          const error = err as TokenErrorInstance
          this.options.log.warn({ errcode: error.errcode, rid: error.rid, reason: error.message }, 'wechat: force_refresh failed; the token WeChat still hands out stays in use')
          this.refusedToken.forceFailed(fetched.token, error.errcode)
        }
      }
    }
    this.fetches++
    const now = this.options.clock.now()
    this.options.log.info({ expiresIn: fetched.expiresIn, endpoint: this.options.endpoint.mode }, 'wechat: fetched a new access_token')
    const expiresAt = now + fetched.expiresIn * 1000
    this.options.emit?.('token:fetched', () => ({ endpoint: this.options.endpoint.mode, expiresAt, forceRefresh: forced }))
    return { token: fetched.token, expiresAt, fetchedAt: now }
  }

  private async fetchWithRetry (forceRefresh: boolean): Promise<{ token: string, expiresIn: number }> {
    const { attempts } = this.options.retry
    for (let attempt = 1; ; attempt++) {
      try {
        // (close() cuts a fetch under way: the pool closes at once instead of waiting out its timeout)
        return await fetchAccessToken(this.options.http, this.options.endpoint, forceRefresh, this.stop)
      } catch (err) {
        const error = err as TokenErrorInstance
        this.hold.failed(error, forceRefresh)
        const retry = error.retryable && error.errcode !== 45011 && attempt < attempts && !this.stop.aborted
        // (a fetch close() cut short did not fail: no warning for it)
        this.options.log[this.stop.aborted ? 'debug' : 'warn']({ errcode: error.errcode, rid: error.rid, attempt, retry }, `wechat: token fetch failed: ${error.message}`)
        if (!retry) throw err
        await sleep(backoffDelay(attempt, this.options.retry), this.stop)
      }
    }
  }
}
