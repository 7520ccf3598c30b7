import type { WireMessage } from './api/subscribe.js'
import type { MessageRecord } from './store/records.js'
import type { DeliveryOutcome } from './delivery/sender.js'

/**
 * Lifecycle events (DESIGN.md `fastify.wechat.on`: "inbound push events and lifecycle events"): a
 * message reached its outcome, or a token fetch succeeded or failed, in this process. Each is emitted
 * once, by the instance that did the work (the one that ran the job, made the direct send, applied
 * the receipt, fetched the token), after the record was written for queued messages. Names carry a
 * colon, which WeChat's push `Event` names never do.
 */
export interface MessageEvent {
  id: string
  status: 'sent' | 'delivered' | 'failed' | 'unknown'
  templateId: string
  toUser: string
  /** attempts used (WeChat calls made for it) */
  attempts: number
  /** who made it: `send()`, `enqueue()`, or a route handler's push */
  source?: 'send' | 'queue' | 'hook'
  msgid?: string
  errcode?: number
  errmsg?: string
}

/** This instance fetched a new access_token (one instance per token generation, fleet-wide). Never the token itself. */
export interface TokenFetchedEvent {
  endpoint: 'stable' | 'classic'
  /** when it expires, ms since the epoch */
  expiresAt: number
  /** a force_refresh was used (the shared token itself was refused) */
  forceRefresh: boolean
}

/** A token fetch by this instance failed after its retries (the advice is in `message`: 40164 names the IP to whitelist...). */
export interface TokenErrorEvent {
  code: string
  errcode?: number
  rid?: string
  message: string
  /** whether a later try may succeed (a network error, -1) or something must be fixed first (40125, 40164) */
  retryable: boolean
}

export interface LifecycleEventMap {
  /** WeChat accepted the message (errcode 0) */
  'message:sent': MessageEvent
  /** its delivery receipt said delivered (option `push`) */
  'message:delivered': MessageEvent
  /** it ended without delivery: a permanent errcode, attempts used up, or a receipt's error */
  'message:failed': MessageEvent
  /** an attempt timed out and a later one got 43101: it may have been delivered */
  'message:unknown': MessageEvent
  'token:fetched': TokenFetchedEvent
  'token:error': TokenErrorEvent
}

export type LifecycleEventName = keyof LifecycleEventMap

/** Every lifecycle event name: `on()` refuses any other name with a ':' (a misspelt one never fires). */
export const LIFECYCLE_EVENT_NAMES: readonly LifecycleEventName[] = ['message:sent', 'message:delivered', 'message:failed', 'message:unknown', 'token:fetched', 'token:error']

/**
 * Emits one lifecycle event; never throws. The payload is built only when a handler listens for the
 * name, so the send path of an app without handlers allocates nothing for events.
 */
export type EmitLifecycle = <K extends LifecycleEventName>(name: K, payload: () => LifecycleEventMap[K]) => void

/** The event of a message that just got its outcome from WeChat. */
export function outcomeEvent (id: string, wire: WireMessage, outcome: DeliveryOutcome, attempts: number, source: MessageEvent['source']): MessageEvent {
  const event: MessageEvent = { id, status: outcome.status, templateId: wire.template_id, toUser: wire.touser, attempts }
  if (source !== undefined) event.source = source
  if (outcome.msgid !== undefined) event.msgid = outcome.msgid
  if (outcome.errcode !== undefined) event.errcode = outcome.errcode
  if (outcome.errmsg !== undefined) event.errmsg = outcome.errmsg
  return event
}

/** The event of a record a receipt just settled. */
export function recordEvent (record: MessageRecord & { status: MessageEvent['status'] }): MessageEvent {
  const event: MessageEvent = { id: record.id, status: record.status, templateId: record.templateId, toUser: record.toUser, attempts: record.attempts }
  if (record.source !== undefined) event.source = record.source
  if (record.msgid !== undefined) event.msgid = record.msgid
  if (record.errcode !== undefined) event.errcode = record.errcode
  if (record.errmsg !== undefined) event.errmsg = record.errmsg
  return event
}

export function lifecycleName (status: MessageEvent['status']): `message:${MessageEvent['status']}` {
  return `message:${status}`
}
