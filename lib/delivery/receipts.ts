import type { FastifyBaseLogger } from 'fastify'
import type { Clock } from '../options.js'
import type { PushEventBus } from '../push/event-bus.js'
import { isChangeEvent, isPopupEvent, isSentEvent } from '../push/events.js'
import type { PushMessage, SentEvent } from '../push/events.js'
import type { WechatStore } from '../store/types.js'
import type { Credits } from './credits.js'

/** A receipt without a msgid match is paired with a send to the same user and template this close in time. */
const RECEIPT_WINDOW_MS = 10 * 60_000

/**
 * Closes the loop (WECHAT.md §7): popup accepts and change rejects feed the credits ledger, and each
 * subscribe_msg_sent_event moves its message to 'delivered' (ErrorCode 0) or 'failed'. Runs as an
 * internal handler, before user handlers, after WeChat already got its `success`.
 */
export function handleReceipts (bus: PushEventBus, store: WechatStore, credits: Credits, options: { clock: Clock, retentionSeconds: number }, log: FastifyBaseLogger): void {
  bus.onInternal(async (message: PushMessage) => {
    if (isPopupEvent(message)) {
      for (const item of message.List) {
        // WECHAT.md §7.1 UNCERTAIN: 'acceptWithAudio' may appear; any accept* is an accept.
        if (item.SubscribeStatusString.startsWith('accept')) await credits.accept(message.FromUserName, item.TemplateId)
      }
    } else if (isChangeEvent(message)) {
      for (const item of message.List) {
        if (item.SubscribeStatusString === 'reject') await credits.reject(message.FromUserName, item.TemplateId)
      }
    } else if (isSentEvent(message)) {
      await settleReceipts(message)
    }
  })

  async function settleReceipts (message: SentEvent): Promise<void> {
    for (const item of message.List) {
      const id = (item.MsgID ? await store.findByMsgid(item.MsgID) : null) ??
        await store.findSentMatch(message.FromUserName, item.TemplateId, message.CreateTime * 1000, RECEIPT_WINDOW_MS)
      if (!id) {
        log.debug({ msgid: item.MsgID, templateId: item.TemplateId }, 'wechat: delivery receipt for a message we have no record of')
        continue
      }
      const patch = item.ErrorCode === 0
        ? { status: 'delivered' as const, ...(item.MsgID ? { msgid: item.MsgID } : {}) }
        : { status: 'failed' as const, errcode: item.ErrorCode, errmsg: item.ErrorStatus || 'delivery failed' }
      await store.updateRecord(id, patch, { ttlSeconds: options.retentionSeconds, now: new Date(options.clock.now()).toISOString() })
    }
  }
}
