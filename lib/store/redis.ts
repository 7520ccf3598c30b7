import type { Redis } from 'ioredis'
import type { Clock } from '../options.js'
import type { KeySpace } from './keys.js'
import { ALL_SCRIPTS } from './scripts.js'
import type { ScriptClient } from './scripts.js'
import { chinaDay, FORCE_REFRESH_PER_DAY, FORCE_REFRESH_SPACING_MS } from './types.js'
import type { ForceRefreshVerdict, LockName, PushClaim, TokenRecord, WechatStore } from './types.js'
import { dropQueuedCommands } from './queued-commands.js'
import { RedisCredits } from './credits-redis.js'
import { RedisRecords } from './records-redis.js'
import { RecordsDelegate } from './records-delegate.js'
import { ttlOf } from './records.js'
import type { TemplateCache } from './records.js'

/** Thrown when Redis cannot answer now; callers fall back to what they hold in process. */
export class StoreUnavailableError extends Error {
  readonly code = 'WECHAT_STORE_UNAVAILABLE'
  /**
   * Whether the command went out (it timed out: a stalled Redis still runs it when it wakes, and a
   * reconnect resends it) or was refused before anything was sent (the client not ready).
   */
  constructor (message: string, readonly sent: boolean) {
    super(message)
  }
}

/**
 * The fleet store on the app's `@fastify/redis` client (STYLE.md rule 6: never a second connection,
 * never `quit()` a client we did not create). Commands fail fast while the client is not ready,
 * instead of waiting in ioredis' offline queue, so a Redis outage never stalls a send.
 */
export class RedisStore extends RecordsDelegate implements WechatStore {
  readonly kind = 'redis' as const
  private readonly client: ScriptClient
  protected readonly records: RedisRecords
  protected readonly credits: RedisCredits

  constructor (client: Redis, private readonly keys: KeySpace, private readonly clock: Clock, private readonly commandTimeout: number) {
    super()
    this.client = client as ScriptClient
    for (const [name, script] of Object.entries(ALL_SCRIPTS)) {
      if (typeof (client as unknown as Record<string, unknown>)[name] !== 'function') client.defineCommand(name, script)
    }
    this.records = new RedisRecords((command) => this.send(command), keys, clock)
    this.credits = new RedisCredits((command) => this.run(command), keys)
  }

  async getTemplates (): Promise<TemplateCache | null> {
    const text = await this.run((c) => c.get(this.keys.templates))
    if (!text) return null
    try {
      const value = JSON.parse(text) as TemplateCache
      if (typeof value.fetchedAt === 'number' && Array.isArray(value.templates)) return value
    } catch {}
    return null
  }

  async putTemplates (value: TemplateCache, ttlSeconds: number): Promise<void> {
    await this.run((c) => c.set(this.keys.templates, JSON.stringify(value), 'EX', ttlOf(ttlSeconds)))
  }

  /** The raw client, for parts (the queue) that need to duplicate it. */
  get redis (): Redis {
    return this.client
  }

  /** Run one command or script with a deadline, after the record writes queued before it. */
  run<T> (command: (client: ScriptClient) => Promise<T>): Promise<T> {
    this.records.flushWrites()
    return this.send(command)
  }

  /** One command or script with a deadline; a dead connection answers at once. */
  private send<T> (command: (client: ScriptClient) => Promise<T>): Promise<T> {
    if (this.client.status !== 'ready') return Promise.reject(new StoreUnavailableError(`redis is not ready (its connection is ${this.client.status})`, false))
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new StoreUnavailableError(`redis did not answer within ${this.commandTimeout} ms`, true)), this.commandTimeout)
      timer.unref()
      command(this.client).then((value) => { clearTimeout(timer); resolve(value) }, (err) => { clearTimeout(timer); reject(err) })
    })
  }

  async getToken (): Promise<TokenRecord | null> {
    const text = await this.run((c) => c.get(this.keys.token))
    if (!text) return null
    const record = parseToken(text)
    return record && record.expiresAt > this.clock.now() ? record : null
  }

  async putTokenIfNewer (record: TokenRecord): Promise<boolean> {
    const ttl = Math.max(1, Math.floor(record.expiresAt - this.clock.now()))
    const written = await this.run((c) => c.wechatPushPutToken(this.keys.token, JSON.stringify(record), record.expiresAt, ttl))
    return written === 1
  }

  async dropToken (token: string): Promise<boolean> {
    return (await this.run((c) => c.wechatPushDropToken(this.keys.token, token))) === 1
  }

  async acquireLock (owner: string, ttlMs: number, name: LockName = 'token'): Promise<boolean> {
    return (await this.run((c) => c.set(this.lockKey(name), owner, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX'))) === 'OK'
  }

  async releaseLock (owner: string, name: LockName = 'token'): Promise<void> {
    await this.run((c) => c.wechatPushReleaseLock(this.lockKey(name), owner))
  }

  private lockKey (name: LockName): string {
    return name === 'token' ? this.keys.lock : this.keys.templatesLock
  }

  async takeForceRefresh (now: number): Promise<ForceRefreshVerdict> {
    const verdict = await this.run((c) => c.wechatPushTakeForce(this.keys.force, chinaDay(now), now, FORCE_REFRESH_PER_DAY, FORCE_REFRESH_SPACING_MS))
    return verdict === 'ok' ? { allowed: true } : { allowed: false, reason: verdict === 'daily' ? 'daily' : 'spacing' }
  }

  async claimPush (key: string, claimMs: number, owner = ''): Promise<PushClaim> {
    const dedupe = this.keys.pushDedupe(key)
    const state = await this.run((c) => c.wechatPushClaim(dedupe, `${dedupe}:owner`, Math.max(1, Math.ceil(claimMs)), owner))
    return state === 'claimed' || state === 'pending' ? state : 'done'
  }

  async settlePush (key: string, doneMs: number | null, owner = ''): Promise<void> {
    const dedupe = this.keys.pushDedupe(key)
    // (dropping is a compare-and-delete: a claim that expired and was taken by another attempt stays)
    if (doneMs === null) await this.run((c) => c.wechatPushDropClaim(dedupe, `${dedupe}:owner`, owner))
    else await this.run((c) => c.set(dedupe, 'done', 'PX', Math.max(1, Math.ceil(doneMs))))
  }

  async close (): Promise<void> {
    // Writes still queued or under way are not lost; the client belongs to @fastify/redis, which closes it.
    await this.records.drainWrites()
    // ...with quit(), which would wait behind our commands that a dropped connection left to resend
    dropQueuedCommands(this.client, this.keys.root, 'the app is closing (app.close()): this command of fastify-wechat-push is not resent')
  }
}

function parseToken (text: string): TokenRecord | null {
  try {
    const value = JSON.parse(text) as Partial<TokenRecord>
    if (typeof value.token === 'string' && typeof value.expiresAt === 'number' && typeof value.fetchedAt === 'number') return value as TokenRecord
  } catch {}
  return null
}
