import type { RecordStore } from './records.js'

export type {
  CreateRecordOptions, MessageRecord, RecentFailure, RecordPatch, RecordStore, StatsSnapshot, Status, StatusCounts,
  TemplateCache, UpdateRecordOptions
} from './records.js'

/** A token as kept in the store and in each process (times in ms on the plugin's clock). */
export interface TokenRecord {
  token: string
  expiresAt: number
  fetchedAt: number
}

export type ForceRefreshVerdict = { allowed: true } | { allowed: false, reason: 'daily' | 'spacing' }

/**
 * The shared state of one mini program (DESIGN.md "lib/store/"). Two implementations side by side:
 * memory (one process) and Redis (a fleet). Every multi-step update is atomic in both. The message
 * records, counters, credits and template cache are `RecordStore` (records.ts).
 */
export interface WechatStore extends RecordStore {
  readonly kind: 'memory' | 'redis'
  getToken (): Promise<TokenRecord | null>
  /** Write `record` unless the store already holds a token that lasts at least as long. */
  putTokenIfNewer (record: TokenRecord): Promise<boolean>
  /** Delete the stored token only if it is still `token` (a rejected token must not take a newer one down). */
  dropToken (token: string): Promise<boolean>
  /** Fleet-wide fetch lock with an owner id and a deadline: the token's, or the template list's. */
  acquireLock (owner: string, ttlMs: number, name?: LockName): Promise<boolean>
  releaseLock (owner: string, name?: LockName): Promise<void>
  /**
   * The stable_token force_refresh budget (WECHAT.md §1.2: 20 a day, 30 s apart), counted per
   * China calendar day. Records a use when allowed.
   */
  takeForceRefresh (now: number): Promise<ForceRefreshVerdict>
  /**
   * Dedupe of WeChat's push retries across instances (WECHAT.md §6.5), in two steps so a push whose
   * effects could not be stored is not taken for done: claim it ('claimed' the first time; 'pending'
   * while another attempt holds an unexpired claim; 'done' once settled), then settle the claim.
   * `owner` names the attempt (unique per attempt), so it can only drop its own claim.
   */
  claimPush (key: string, claimMs: number, owner?: string): Promise<PushClaim>
  /**
   * `doneMs`: the effects are stored, remember the push that long; null: drop the claim if `owner`
   * still holds it (a retry may apply the push; a claim that expired and another attempt took stays).
   */
  settlePush (key: string, doneMs: number | null, owner?: string): Promise<void>
  close (): Promise<void>
}

export type PushClaim = 'claimed' | 'pending' | 'done'

/** What a fleet-wide lock guards: one fetch of the token, one of the template list. */
export type LockName = 'token' | 'templates'

/** WeChat quotas reset on calendar days in China (UTC+8; WECHAT.md §8.1 UNCERTAIN, the usual guess). */
export function chinaDay (now: number): string {
  return new Date(now + 8 * 3_600_000).toISOString().slice(0, 10)
}

export const FORCE_REFRESH_PER_DAY = 20
export const FORCE_REFRESH_SPACING_MS = 30_000
