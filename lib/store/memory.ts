import type { Clock } from '../options.js'
import { chinaDay, FORCE_REFRESH_PER_DAY, FORCE_REFRESH_SPACING_MS } from './types.js'
import type { ForceRefreshVerdict, LockName, PushClaim, TokenRecord, WechatStore } from './types.js'
import { MemoryCredits } from './credits-memory.js'
import { MemoryRecords } from './records-memory.js'
import { RecordsDelegate } from './records-delegate.js'
import { ttlOf } from './records.js'
import type { TemplateCache } from './records.js'

/**
 * Single-process store: the default when no Redis is registered. Same contract as the Redis store;
 * JavaScript's single thread makes each method atomic.
 */
export class MemoryStore extends RecordsDelegate implements WechatStore {
  readonly kind = 'memory' as const
  private token: TokenRecord | null = null
  private readonly locks = new Map<LockName, { owner: string, until: number }>()
  private force = { day: '', count: 0, last: 0 }

  protected readonly records: MemoryRecords
  protected readonly credits = new MemoryCredits()
  private templates: { value: TemplateCache, until: number } | null = null

  /** `maxRecords`: message records kept at most (the least recently written are evicted first) */
  constructor (private readonly clock: Clock, options: { maxRecords?: number } = {}) {
    super()
    this.records = new MemoryRecords(clock, options.maxRecords)
  }

  async getToken (): Promise<TokenRecord | null> {
    if (this.token && this.token.expiresAt <= this.clock.now()) this.token = null
    return this.token
  }

  async putTokenIfNewer (record: TokenRecord): Promise<boolean> {
    const current = await this.getToken()
    if (current && current.expiresAt >= record.expiresAt) return false
    this.token = { ...record }
    return true
  }

  async dropToken (token: string): Promise<boolean> {
    if (this.token?.token !== token) return false
    this.token = null
    return true
  }

  async acquireLock (owner: string, ttlMs: number, name: LockName = 'token'): Promise<boolean> {
    const now = this.clock.now()
    const lock = this.locks.get(name)
    if (lock && lock.until > now && lock.owner !== owner) return false
    this.locks.set(name, { owner, until: now + ttlMs })
    return true
  }

  async releaseLock (owner: string, name: LockName = 'token'): Promise<void> {
    if (this.locks.get(name)?.owner === owner) this.locks.delete(name)
  }

  async takeForceRefresh (now: number): Promise<ForceRefreshVerdict> {
    const day = chinaDay(now)
    if (this.force.day !== day) this.force = { day, count: 0, last: this.force.last }
    if (this.force.count >= FORCE_REFRESH_PER_DAY) return { allowed: false, reason: 'daily' }
    if (now - this.force.last < FORCE_REFRESH_SPACING_MS) return { allowed: false, reason: 'spacing' }
    this.force.count++
    this.force.last = now
    return { allowed: true }
  }

  private readonly seen = new Map<string, { state: 'pending' | 'done', until: number, owner?: string }>()

  async claimPush (key: string, claimMs: number, owner = ''): Promise<PushClaim> {
    const now = this.clock.now()
    if (this.seen.size > 10_000) {
      for (const [k, { until }] of this.seen) if (until <= now) this.seen.delete(k)
    }
    const entry = this.seen.get(key)
    if (entry !== undefined && entry.until > now) return entry.state
    this.seen.set(key, { state: 'pending', until: now + claimMs, owner })
    return 'claimed'
  }

  async settlePush (key: string, doneMs: number | null, owner = ''): Promise<void> {
    if (doneMs !== null) this.seen.set(key, { state: 'done', until: this.clock.now() + doneMs })
    else {
      // only the owner's own claim, even expired (a claim another attempt took since stays)
      const entry = this.seen.get(key)
      if (entry?.state === 'pending' && entry.owner === owner) this.seen.delete(key)
    }
  }

  async getTemplates (): Promise<TemplateCache | null> {
    if (!this.templates || this.templates.until <= this.clock.now()) return null
    return structuredClone(this.templates.value)
  }

  async putTemplates (value: TemplateCache, ttlSeconds: number): Promise<void> {
    this.templates = { value: structuredClone(value), until: this.clock.now() + ttlOf(ttlSeconds) * 1000 }
  }

  async close (): Promise<void> {}
}
