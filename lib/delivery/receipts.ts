import type { FastifyBaseLogger } from 'fastify'
import type { Clock } from '../options.js'
import type { PushEventBus } from '../push/event-bus.js'
import { dedupeKey, isChangeEvent, isPopupEvent, isSentEvent } from '../push/events.js'
import type { PushMessage, SentEvent, SentItem } from '../push/events.js'
import type { WechatStore } from '../store/types.js'
import { AWAITING_RECEIPT } from '../store/records.js'
import type { Status } from '../store/records.js'
import type { Credits } from './credits.js'
import { lifecycleName, recordEvent } from '../lifecycle.js'

/** A receipt without a msgid match is paired with a send to the same user and template this close in time. */
const RECEIPT_WINDOW_MS = 10 * 60_000

/**
 * A receipt can arrive before the result of its send is in the store: WeChat (or a test WeChat) may push
 * it before our send has read its answer, a direct send's record write is not awaited, and in a fleet the
 * push may reach another instance. An unmatched receipt is looked up again after these delays (ms).
 */
export const RECEIPT_RETRY_DELAYS_MS: readonly number[] = [250, 1000, 4000]
/** Most unmatched receipts waiting for a retry at once; beyond it they are dropped (logged). */
const MAX_WAITING = 1000
/** How far ahead of our clock an event's CreateTime may be and still order it (clock skew, a test's times). */
const MAX_FUTURE_MS = 86_400_000
/** Looks for a message paired by user, template and time, when another receipt took the one found. */
const MATCH_ATTEMPTS = 5
/** What a pairing by time may claim: findSentMatch's statuses */
const AWAITING = [...AWAITING_RECEIPT] as readonly Status[]

export interface ReceiptHandler {
  /** Cancels the retries still waiting (on close: the store is about to go away). */
  close (): void
}

/**
 * Closes the loop (WECHAT.md §7): popup accepts and change rejects feed the credits ledger, and each
 * subscribe_msg_sent_event moves its message to 'delivered' (ErrorCode 0) or 'failed'. Runs as an
 * internal handler, before user handlers and before WeChat gets its `success`: a store error
 * rejects, the push is answered 503 and WeChat's retry applies it (so each step must be safe to
 * repeat after a failure: one write for a popup's accepts, zeroing and settling are idempotent).
 */
export function handleReceipts (bus: PushEventBus, store: WechatStore, credits: Credits, options: { clock: Clock, retentionSeconds: number }, log: FastifyBaseLogger): ReceiptHandler {
  const waiting = new Set<NodeJS.Timeout>()
  let closed = false

  bus.onInternal(async (message: PushMessage) => {
    // (the event's time orders accepts and rejects whose pushes arrive out of order; 0: not given).
    // A time more than a day ahead is no event's (milliseconds sent as seconds): taken as not given,
    // for it made every real reject after it look older and be ignored (an audit).
    const eventMs = message.CreateTime * 1000
    const at = message.CreateTime > 0 && eventMs <= options.clock.now() + MAX_FUTURE_MS ? eventMs : undefined
    if (isPopupEvent(message)) {
      // WECHAT.md §7.1 UNCERTAIN: 'acceptWithAudio' may appear; any accept* is an accept.
      const accepted = message.List.filter((item) => item.SubscribeStatusString.startsWith('accept')).map((item) => item.TemplateId)
      // (once per push: a write that timed out may still land, and WeChat's retry must not add again)
      await credits.acceptAll(message.FromUserName, accepted, dedupeKey(message), at)
    } else if (isChangeEvent(message)) {
      for (const item of message.List) {
        if (item.SubscribeStatusString === 'reject') await credits.reject(message.FromUserName, item.TemplateId, at)
      }
    } else if (isSentEvent(message)) {
      for (const item of message.List) {
        if (!(await settle(message, item))) retryLater(message, item, 0)
      }
    }
  })

  /** Applies one receipt item to its message; false when no message matches (yet). */
  async function settle (message: SentEvent, item: SentItem): Promise<boolean> {
    const named = item.MsgID ? await byMsgid(message, item, item.MsgID) : null
    if (named !== null) return apply(named, item, undefined)
    // Paired by user, template and time: the claim is conditional (still awaiting a receipt), so two
    // receipts arriving together for two such messages cannot both take the closest one (an audit:
    // the second overwrote the first's msgid and the other message stayed 'sent' for good). One that
    // lost the race looks again, and finds the next one.
    for (let attempt = 0; attempt < MATCH_ATTEMPTS; attempt++) {
      const id = await store.findSentMatch(message.FromUserName, item.TemplateId, message.CreateTime * 1000, RECEIPT_WINDOW_MS)
      if (id === null) return false
      if (await apply(id, item, AWAITING)) return true
    }
    return false
  }

  /** Moves message `id` by the receipt item; false when `onlyFrom` was given and the message had moved on. */
  async function apply (id: string, item: SentItem, onlyFrom: readonly Status[] | undefined): Promise<boolean> {
    // (a message paired by user, template and time learns its msgid from the receipt, either way)
    const msgid = item.MsgID ? { msgid: item.MsgID } : {}
    // A delivered message carries no error: a failure receipt before it (WeChat's retry of the
    // delivery then succeeded) is history, not its outcome.
    const patch = item.ErrorCode === 0
      ? { status: 'delivered' as const, errcode: null, errmsg: null, ...msgid }
      : { status: 'failed' as const, errcode: item.ErrorCode, errmsg: item.ErrorStatus || 'delivery failed', ...msgid }
    const before: { status?: Status } = {}
    const record = await store.updateRecord(id, patch, { ttlSeconds: options.retentionSeconds, now: new Date(options.clock.now()).toISOString(), before, onlyFrom })
    if (onlyFrom !== undefined && record !== null && !onlyFrom.includes(before.status as Status)) return false
    // Emitted only when this receipt moved the message: not for a record the store would not move
    // (already delivered, answered as it was), nor for a second receipt of the same message (a
    // WeChat retry of a push answered 503 after this item was applied, or a repeat with another CreateTime).
    if (record !== null && record.status === patch.status && before.status !== patch.status) bus.emitLifecycle(lifecycleName(patch.status), () => recordEvent({ ...record, status: patch.status }))
    return true
  }

  /**
   * The message a receipt's MsgID names, if it went to the receipt's user with its template: WECHAT.md
   * §7.3 matches by (openid, TemplateId, time), not by MsgID alone, so a MsgID naming another user's
   * message is not trusted (the receipt is then paired by user, template and time).
   */
  async function byMsgid (message: SentEvent, item: SentItem, msgid: string): Promise<string | null> {
    const id = await store.findByMsgid(msgid)
    if (id === null) return null
    const record = await store.getRecord(id)
    // (a record gone since, past its retention: nothing to check, and nothing to move)
    if (record === null || (record.toUser === message.FromUserName && record.templateId === item.TemplateId)) return id
    log.warn({ msgid, templateId: item.TemplateId, messageId: id }, 'wechat: a delivery receipt\'s MsgID names a message to another user or template; matched by user, template and time instead')
    return null
  }

  function retryLater (message: SentEvent, item: SentItem, attempt: number): void {
    const delay = RECEIPT_RETRY_DELAYS_MS[attempt]
    if (closed || delay === undefined || waiting.size >= MAX_WAITING) {
      log.debug({ msgid: item.MsgID, templateId: item.TemplateId }, 'wechat: delivery receipt for a message we have no record of')
      return
    }
    const timer = setTimeout(() => {
      waiting.delete(timer)
      settle(message, item).then((done) => { if (!done) retryLater(message, item, attempt + 1) }, (err: Error) => {
        log.warn({ msgid: item.MsgID, templateId: item.TemplateId, reason: err.message }, 'wechat: could not apply a delivery receipt')
      })
    }, delay)
    timer.unref()
    waiting.add(timer)
  }

  return {
    close () {
      closed = true
      for (const timer of waiting) clearTimeout(timer)
      waiting.clear()
    }
  }
}
