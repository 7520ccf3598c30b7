/**
 * Builders for the wire format of pushes (WECHAT.md §6.3, §7): used by the WeChat simulator to push
 * events to an app and by tests. The inverse of parse.ts + events.ts; not for hostile input.
 */
import { randomInt } from 'node:crypto'
import { XMLBuilder } from 'fast-xml-parser'
import { encryptMessage } from './crypto.js'
import { pushSignature } from './signature.js'

/** XML wrapper element that holds the <List> items of each subscribe event (§7). JSON has none. */
export const EVENT_WRAPPERS = {
  subscribe_msg_popup_event: 'SubscribeMsgPopupEvent',
  subscribe_msg_change_event: 'SubscribeMsgChangeEvent',
  subscribe_msg_sent_event: 'SubscribeMsgSentEvent'
} as const

const CDATA = '#cdata'
// Strings go in CDATA like WeChat's own pushes; the builder splits any "]]>" inside a string.
const xmlBuilder = new XMLBuilder({ cdataPropName: CDATA, suppressEmptyNode: false })

function toXmlValue (value: unknown): unknown {
  if (value === undefined || value === null) return undefined
  if (typeof value === 'string') return { [CDATA]: value }
  if (Array.isArray(value)) return value.map(toXmlValue)
  if (typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toXmlValue(v)]))
  }
  return String(value) // numbers and booleans as bare text, e.g. <CreateTime>1767225600</CreateTime>
}

/** The message's wire fields: `raw` (added by normalizePush) is not one of them. */
function wireFields (message: object): Record<string, unknown> {
  const { raw: _raw, ...fields } = message as Record<string, unknown>
  return fields
}

export interface PushBodyOptions { format: 'xml' | 'json' }

/**
 * Serialise a push to WeChat's wire format. XML: `<xml>` root, strings in CDATA, List items inside the
 * event's wrapper element (top-level <List> for other events). JSON: List as an object when it has
 * exactly one item and as an array otherwise (§7 "Parsing gotchas").
 */
export function buildPushBody (message: object, { format }: PushBodyOptions): string {
  const { List: list, ...fields } = wireFields(message)
  if (format === 'json') {
    const jsonList = Array.isArray(list) && list.length === 1 ? list[0] : list
    return JSON.stringify(list === undefined ? fields : { ...fields, List: jsonList })
  }
  const xml = toXmlValue(fields) as Record<string, unknown>
  if (list !== undefined) {
    const items = toXmlValue(Array.isArray(list) ? list : [list])
    // Event may be anything a caller passed (fuzzers pass objects with no toString): only an own key maps.
    const event = fields.Event
    const wrapper = typeof event === 'string' && Object.hasOwn(EVENT_WRAPPERS, event) ? EVENT_WRAPPERS[event as keyof typeof EVENT_WRAPPERS] : undefined
    if (wrapper === undefined) xml.List = items
    else xml[wrapper] = { List: items }
  }
  return xmlBuilder.build({ xml }) as string
}

export interface EncryptedEnvelopeOptions extends PushBodyOptions {
  token: string
  key: Buffer
  appId: string
  /** Defaults to the message's ToUserName. */
  toUserName?: string
  /** Unix seconds; defaults to now. */
  timestamp?: string | number
  /** Defaults to 10 random digits, like WeChat's. */
  nonce?: string
  /** 16 bytes for the AES plaintext prefix; random by default. */
  random?: Buffer
  /** Compatible mode (§6.1 兼容): plaintext fields next to Encrypt. Default: safe mode. */
  compatible?: boolean
}

export interface EncryptedEnvelope {
  /** The POST body: `{ToUserName, Encrypt}` as JSON or `<xml>` (§6.3). */
  body: string
  /** The POST query parameters (§6.3). */
  query: { signature: string; timestamp: string; nonce: string; encrypt_type: 'aes'; msg_signature: string }
  /** The Encrypt field on its own. */
  encrypt: string
}

/** Build a safe-mode (or compatible-mode) push: encrypted body plus the signed query parameters. */
export function buildEncryptedEnvelope (message: object, options: EncryptedEnvelopeOptions): EncryptedEnvelope {
  const { format, token, key, appId, random, compatible = false } = options
  const timestamp = String(options.timestamp ?? Math.floor(Date.now() / 1000))
  const nonce = options.nonce ?? String(randomInt(1_000_000_000, 10_000_000_000))
  const encrypt = encryptMessage(buildPushBody(message, { format }), { key, appId, random })
  const ToUserName = options.toUserName ?? (message as { ToUserName?: unknown }).ToUserName
  const outer = compatible ? { ...wireFields(message), Encrypt: encrypt } : { ToUserName, Encrypt: encrypt }
  return {
    body: buildPushBody(outer, { format }),
    query: {
      // `signature` covers only token/timestamp/nonce; msg_signature also covers Encrypt (§6.3).
      signature: pushSignature([token, timestamp, nonce]),
      timestamp,
      nonce,
      encrypt_type: 'aes',
      msg_signature: pushSignature([token, timestamp, nonce, encrypt])
    },
    encrypt
  }
}
