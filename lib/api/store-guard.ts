import type { FastifyBaseLogger } from 'fastify'
import type { WechatStore } from '../store/types.js'

/**
 * Runs store calls for the token manager and turns a failing store into "unavailable" instead of an
 * error: the token path then serves from process memory or fetches directly (DESIGN.md "Redis
 * down"). It logs the transition once each way, not every failed command.
 */
export class StoreGuard {
  available = true

  constructor (private readonly store: WechatStore, private readonly log: FastifyBaseLogger) {}

  async attempt<T> (call: (store: WechatStore) => Promise<T>): Promise<T | undefined> {
    try {
      const value = await call(this.store)
      if (!this.available) {
        this.available = true
        this.log.info('wechat: the shared store is reachable again; the token is shared again')
      }
      return value
    } catch (err) {
      if (this.available) {
        this.available = false
        this.log.warn({ reason: (err as Error).message }, 'wechat: the shared store is unavailable; serving the in-process token and fetching directly when needed')
      }
      return undefined
    }
  }
}
