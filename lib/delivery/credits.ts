import type { FastifyBaseLogger } from 'fastify'
import { WechatNoCreditError, WechatStoreError } from '../errors.js'
import { LateUndo } from '../store/late-undo.js'
import type { WechatStore } from '../store/types.js'
import type { DeliveryOutcome } from './sender.js'
import { within } from './within.js'

/** 'one-time' templates use one credit per send (WECHAT.md §7.1); 'long-term' ones do not. */
export type TemplateKind = 'one-time' | 'long-term'
export type TemplateKindLookup = (templateId: string) => TemplateKind | undefined
/** Loads what TemplateKindLookup reads (the template list) when it may not know these ids yet. */
export type TemplateKindsReady = (templateIds: readonly string[]) => Promise<void> | undefined

/** How long a pop-up's accepts wait for the template list (the push is answered within WeChat's 5 s). */
const KINDS_WAIT_MS = 2000

export const NO_CONSENT_ERRCODE = 43101
/**
 * How long a push's accepts are remembered as applied (addCredits' `once`): longer than WeChat's
 * retries of one push take (3 attempts, 5 s each, WECHAT.md §6.5) by far.
 */
export const ACCEPT_ONCE_MS = 10 * 60_000
/** How long a reserve's "credit taken" mark lives, and how long an unanswered reserve is undone for. */
const RESERVE_MARK_MS = 10 * 60_000
const RESERVE_UNDO_WINDOW_MS = 60_000

/**
 * The credits ledger policy (option `credits`). WeChat never says how many sends a user allowed,
 * so we count: a popup `accept` adds one per (openid, template), a change-event `reject` zeroes it,
 * an accepted send uses one, a 43101 zeroes it. 'enforce' refuses locally when there is none.
 * Templates known to be long-term are never counted; unknown templates count as one-time.
 */
export class Credits {
  constructor (
    private readonly store: WechatStore,
    readonly mode: 'off' | 'track' | 'enforce',
    private readonly kindOf: TemplateKindLookup,
    private readonly log: FastifyBaseLogger,
    private readonly kindsReady: TemplateKindsReady = () => undefined
  ) {}

  /** Whether sends of this template move the ledger at all (settle() does nothing otherwise). */
  counts (templateId: string): boolean {
    return this.mode !== 'off' && this.kindOf(templateId) !== 'long-term'
  }

  /** Whether reserve() would take a credit (otherwise it answers false without asking the store). */
  reserves (templateId: string): boolean {
    return this.mode === 'enforce' && this.counts(templateId)
  }

  /** reserves whose answer never came, given back if they took a credit (they may run late) */
  private readonly unanswered = new LateUndo()

  /**
   * enforce: take a credit before any call, or throw FST_WECHAT_NO_CREDIT (or FST_WECHAT_STORE when
   * the store does not answer). Returns whether one was taken. `messageId` marks the take, so a
   * reserve that timed out and ran late anyway (a stalled Redis) gives its credit back.
   */
  async reserve (openid: string, templateId: string, messageId?: string): Promise<boolean> {
    if (!this.reserves(templateId)) return false
    let ok: boolean
    try {
      ({ ok } = await this.store.useCredit(openid, templateId, true, messageId === undefined ? undefined : { id: messageId, ttlMs: RESERVE_MARK_MS }))
    } catch (err) {
      if (messageId !== undefined) this.unanswered.run(() => this.store.refundMarked(openid, templateId, messageId), RESERVE_UNDO_WINDOW_MS)
      throw new WechatStoreError(`could not take a subscription credit (${(err as Error).message})`, { cause: err })
    }
    if (!ok) throw new WechatNoCreditError(`the user has no subscription credit for template ${templateId} (credits: 'enforce'); they must accept the subscribe pop-up first`)
    return true
  }

  /** After WeChat's final word on a message. */
  async settle (openid: string, templateId: string, outcome: Pick<DeliveryOutcome, 'status' | 'errcode'>, reserved: boolean): Promise<void> {
    if (!this.counts(templateId)) return
    try {
      if (outcome.status === 'sent') {
        if (!reserved) await this.store.useCredit(openid, templateId, false)
      } else if (outcome.errcode === NO_CONSENT_ERRCODE) {
        // WeChat says there is none left: our count was wrong (or the user revoked); trust WeChat.
        await this.store.zeroCredit(openid, templateId)
      } else if (reserved && outcome.status === 'failed') {
        await this.store.refundCredit(openid, templateId)
      }
    } catch (err) {
      this.log.warn({ templateId, reason: (err as Error).message }, 'wechat: could not update the credits ledger')
    }
  }

  /**
   * The accepts of one push, in one store write: a retry after a failure must not add some twice.
   * `once` (the push's dedupe key) makes the write apply once for that push, even when a write that
   * timed out lands later and WeChat's retry writes again.
   */
  async acceptAll (openid: string, templateIds: readonly string[], once?: string, at?: number): Promise<void> {
    if (this.mode === 'off') return
    // A long-term template is never counted: on an app that has sent nothing yet the list that says
    // which templates are long-term was not loaded, and their accepts were counted as one-time.
    const ready = this.kindsReady(templateIds)
    if (ready !== undefined) await within(ready, KINDS_WAIT_MS)
    const counts = new Map<string, number>()
    for (const id of templateIds) if (this.counts(id)) counts.set(id, (counts.get(id) ?? 0) + 1)
    if (counts.size > 0) await this.store.addCredits(openid, counts, once === undefined ? undefined : { key: once, ttlMs: ACCEPT_ONCE_MS }, at)
  }

  /**
   * A change event's reject (`at`: its time, ms). Pushes can arrive out of order (WeChat retries one
   * that was not answered): a reject older than an accept already counted leaves that credit, and an
   * accept older than a reject already applied adds none (the store keeps both times).
   */
  async reject (openid: string, templateId: string, at?: number): Promise<void> {
    if (this.mode === 'off') return
    if (!await this.store.zeroCredit(openid, templateId, at)) {
      this.log.debug({ templateId }, 'wechat: a subscription reject older than an accept already counted was ignored (its push came late)')
    }
  }

  /** close(): the undos still retrying stop (the store is about to go away). */
  close (): void {
    this.unanswered.close()
  }

  async of (openid: string): Promise<Record<string, number>> {
    return this.store.getCredits(openid)
  }
}
