/**
 * Normalise a parsed push (XML via parseXml or JSON via parseJson) into one typed shape.
 * WeChat varies the shape by format (WECHAT.md §7 "Parsing gotchas"): XML wraps items in
 * SubscribeMsg*Event › List, JSON puts List at the top as an object (one item) or an array;
 * numbers arrive as strings or integers; MsgID exceeds 2^53. Hostile input → PushRejection('format').
 */
import { createHash } from 'node:crypto'
import { EVENT_WRAPPERS } from './envelope.js'
import { PushRejection } from './rejection.js'

export { buildPushBody } from './envelope.js'

export interface PushEnvelope {
  ToUserName: string
  FromUserName: string
  CreateTime: number
  MsgType: string
  Event?: string
  /** The parsed body as received, for fields this module does not model. */
  raw: Record<string, unknown>
}
export interface PopupItem { TemplateId: string; SubscribeStatusString: string; PopupScene: number | undefined }
export interface ChangeItem { TemplateId: string; SubscribeStatusString: string }
export interface SentItem { TemplateId: string; MsgID: string; ErrorCode: number; ErrorStatus: string }

export type PopupEvent = PushEnvelope & { Event: 'subscribe_msg_popup_event'; List: PopupItem[] }
export type ChangeEvent = PushEnvelope & { Event: 'subscribe_msg_change_event'; List: ChangeItem[] }
export type SentEvent = PushEnvelope & { Event: 'subscribe_msg_sent_event'; List: SentItem[] }
export type OtherPush = PushEnvelope & { Event?: string; List?: undefined }
export type PushMessage = PopupEvent | ChangeEvent | SentEvent | OtherPush

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Integers arrive as numbers or decimal strings (§7: CreateTime, PopupScene, ErrorCode). */
function toInt (value: unknown): number | undefined {
  const n = typeof value === 'string' && /^\s*-?\d{1,16}\s*$/.test(value) ? Number(value) : value
  return typeof n === 'number' && Number.isSafeInteger(n) ? n : undefined
}

function requireString (obj: Record<string, unknown>, key: string): string {
  const value = obj[key]
  if (typeof value !== 'string' || value === '') throw new PushRejection('format', `${key} must be a non-empty string`)
  return value
}

function optionalString (value: unknown): string {
  return typeof value === 'string' ? value : ''
}

/** MsgID must keep every digit (§7.3): strings pass, numbers only while exactly representable. */
function msgIdOf (value: unknown): string {
  if (value === undefined) return ''
  if (typeof value === 'string') return value.trim()
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value)
  throw new PushRejection('format', 'MsgID must be a string or a safe integer')
}

/** Items of a subscribe event: any wrapper present (the matching one first), else top-level List. */
function itemsOf (raw: Record<string, unknown>, event: keyof typeof EVENT_WRAPPERS): Array<Record<string, unknown>> {
  // §7: an official example put a change event inside <SubscribeMsgPopupEvent>, so accept any wrapper.
  const wrapper = [EVENT_WRAPPERS[event], ...Object.values(EVENT_WRAPPERS)].map((name) => raw[name]).find(isRecord)
  const list = (wrapper ?? raw).List
  const items = list === undefined ? [] : Array.isArray(list) ? list : [list]
  // §7: the wrapper holds one or more <List>, a JSON List is one object or an array of several. An
  // event without items says nothing; refusing it beats handing handlers `List: []`.
  if (items.length === 0) throw new PushRejection('format', 'List must have at least one item')
  return items.map((item) => {
    if (!isRecord(item)) throw new PushRejection('format', 'List items must be objects')
    requireString(item, 'TemplateId')
    return item
  })
}

function popupItem (item: Record<string, unknown>): PopupItem {
  return {
    TemplateId: item.TemplateId as string,
    SubscribeStatusString: requireString(item, 'SubscribeStatusString'),
    // Always 0 for mini programs (§7.1); not worth rejecting a push over, so garbage → undefined.
    PopupScene: toInt(item.PopupScene)
  }
}

function changeItem (item: Record<string, unknown>): ChangeItem {
  return { TemplateId: item.TemplateId as string, SubscribeStatusString: requireString(item, 'SubscribeStatusString') }
}

/**
 * One result of a sent event, or undefined when it carries no readable ErrorCode and its ErrorStatus
 * is not `success`: nothing says whether that message was delivered, so it moves no record. Such an
 * item is left out rather than refusing the whole push, which lost every other result in it after
 * WeChat's retries (§7.3 documents no code but 0).
 */
function sentItem (item: Record<string, unknown>): SentItem | undefined {
  const ErrorStatus = typeof item.ErrorStatus === 'string' ? item.ErrorStatus : ''
  const ErrorCode = toInt(item.ErrorCode) ?? (ErrorStatus.trim().toLowerCase() === 'success' ? 0 : undefined)
  if (ErrorCode === undefined) return undefined
  return {
    TemplateId: item.TemplateId as string,
    // §7.3 spells it MsgID; plain messages use MsgId, and a sender that reuses that spelling should
    // still get its receipt matched by id rather than fall back to the time window.
    MsgID: msgIdOf(item.MsgID ?? item.MsgId),
    ErrorCode,
    ErrorStatus
  }
}

function sentItems (raw: Record<string, unknown>): SentItem[] {
  const items = itemsOf(raw, 'subscribe_msg_sent_event').map(sentItem).filter((item) => item !== undefined)
  if (items.length === 0) throw new PushRejection('format', 'ErrorCode must be an integer')
  return items
}

const SUBSCRIBE_EVENTS = new Set(['subscribe_msg_popup_event', 'subscribe_msg_change_event', 'subscribe_msg_sent_event'])

/**
 * Validate and normalise a parsed push body. Throws PushRejection('format') only. The subscribe events
 * need their whole envelope (§7: credits and receipts are per user); any other push (WeChat's
 * `debug_demo` test event, a kind this plugin does not model) needs only its MsgType (every WeChat
 * push carries one) or its whole envelope: a field it lacks reads as '' or 0, so it is acknowledged
 * instead of retried three times and dropped.
 */
export function normalizePush (raw: Record<string, unknown>): PushMessage {
  if (!isRecord(raw)) throw new PushRejection('format', 'push must be an object')
  const Event = raw.Event
  if (Event !== undefined && typeof Event !== 'string') throw new PushRejection('format', 'Event must be a string')
  const strict = SUBSCRIBE_EVENTS.has(Event as string)
  const CreateTime = toInt(raw.CreateTime)
  if (strict && (CreateTime === undefined || CreateTime < 0)) throw new PushRejection('format', 'CreateTime must be an integer')
  const envelope: OtherPush = {
    ToUserName: strict ? requireString(raw, 'ToUserName') : optionalString(raw.ToUserName),
    FromUserName: strict ? requireString(raw, 'FromUserName') : optionalString(raw.FromUserName),
    CreateTime: CreateTime !== undefined && CreateTime >= 0 ? CreateTime : 0,
    MsgType: optionalString(raw.MsgType),
    raw
  }
  // Nothing to tell it is a push at all (no MsgType, no whole envelope): not WeChat's.
  if (!strict && envelope.MsgType === '' && (envelope.ToUserName === '' || envelope.FromUserName === '' || CreateTime === undefined || CreateTime < 0)) {
    throw new PushRejection('format', 'a push needs its MsgType, or ToUserName, FromUserName and CreateTime')
  }
  if (Event !== undefined) envelope.Event = Event
  switch (Event) {
    case 'subscribe_msg_popup_event':
      return { ...envelope, Event, List: itemsOf(raw, Event).map(popupItem) }
    case 'subscribe_msg_change_event':
      return { ...envelope, Event, List: itemsOf(raw, Event).map(changeItem) }
    case 'subscribe_msg_sent_event':
      return { ...envelope, Event, List: sentItems(raw) }
    default:
      return envelope
  }
}

export function isPopupEvent (msg: PushMessage): msg is PopupEvent {
  return msg.Event === 'subscribe_msg_popup_event' && Array.isArray(msg.List)
}
export function isChangeEvent (msg: PushMessage): msg is ChangeEvent {
  return msg.Event === 'subscribe_msg_change_event' && Array.isArray(msg.List)
}
export function isSentEvent (msg: PushMessage): msg is SentEvent {
  return msg.Event === 'subscribe_msg_sent_event' && Array.isArray(msg.List)
}

/**
 * Key for dropping WeChat's retries (§6.5: up to 3 attempts): FromUserName + CreateTime + Event +
 * the sorted items, each with every field it carries: a retry repeats them all, while two different
 * outcomes in the same second (an accept then a reject of one template, two sends' results told
 * apart by MsgID) are two pushes. A plain message adds its MsgId. sha1 keeps the key short.
 * Undefined when the push names no user or time (only pushes other than the subscribe events): no
 * key could tell its retry from the next such push, so it is not deduplicated.
 */
export function dedupeKey (msg: PushMessage): string | undefined {
  const plainId = msg.List === undefined ? msg.raw.MsgId ?? msg.raw.MsgID : undefined
  const msgId = typeof plainId === 'string' || typeof plainId === 'number' ? String(plainId) : ''
  // (a subscribe event always has both, checked by normalizePush: CreateTime 0 is a time like any other)
  if (msgId === '' && msg.List === undefined && (msg.FromUserName === '' || msg.CreateTime === 0)) return undefined
  const list: Array<PopupItem | ChangeItem | SentItem> = msg.List ?? []
  const items = list.map(itemKey).sort()
  return createHash('sha1').update(JSON.stringify([msg.FromUserName, msg.CreateTime, msg.Event ?? '', items, msgId])).digest('hex')
}

function itemKey (item: PopupItem | ChangeItem | SentItem): string {
  if ('MsgID' in item) return JSON.stringify([item.TemplateId, item.MsgID, item.ErrorCode, item.ErrorStatus])
  if ('PopupScene' in item) return JSON.stringify([item.TemplateId, item.SubscribeStatusString, item.PopupScene ?? null])
  return JSON.stringify([item.TemplateId, item.SubscribeStatusString])
}
