import { aesKeyFromEncodingAESKey, decryptMessage } from '../push/crypto.js'
import { parseJson, parseXml } from '../push/parse.js'
import { verifyMsgSignature } from '../push/signature.js'

/** What a push was sent with: its reply must match (WECHAT.md §6.5). */
export interface ReplyRules {
  token: string
  mode: 'plaintext' | 'compatible' | 'safe'
  format: 'xml' | 'json'
  encodingAESKey?: string
  appId: string
}

/**
 * Whether an answer's body is a passive reply WeChat takes, which ends its retries as `success` does
 * (WECHAT.md §6.5: replies "must use the configured format"): in the push's format (XML or JSON), a
 * message with ToUserName, FromUserName, CreateTime and MsgType; in safe mode only encrypted
 * (`Encrypt`, `MsgSignature` over Token, TimeStamp, Nonce and Encrypt, decrypting to this AppID), in
 * plaintext mode only plain, in compatible mode either.
 */
export function isPassiveReply (body: string, rules: ReplyRules): boolean {
  const fields = read(body, rules.format)
  if (fields === undefined) return false
  if (fields.Encrypt === undefined) return rules.mode !== 'safe' && isMessage(fields)
  if (rules.mode === 'plaintext' || rules.encodingAESKey === undefined) return false
  const { Encrypt: encrypt, MsgSignature: msgSignature, TimeStamp: timestamp, Nonce: nonce } = fields
  if (!verifyMsgSignature({ token: rules.token, timestamp: text(timestamp), nonce: text(nonce), encrypt, msgSignature })) return false
  try {
    const { message } = decryptMessage(encrypt as string, { keys: [aesKeyFromEncodingAESKey(rules.encodingAESKey)], appId: rules.appId })
    const inner = read(message, rules.format)
    return inner !== undefined && isMessage(inner)
  } catch {
    return false
  }
}

function read (body: string, format: 'xml' | 'json'): Record<string, unknown> | undefined {
  try {
    return format === 'json' ? parseJson(body) : parseXml(body)
  } catch {
    return undefined
  }
}

function isMessage (fields: Record<string, unknown>): boolean {
  return ['ToUserName', 'FromUserName', 'MsgType'].every((name) => typeof fields[name] === 'string' && fields[name] !== '') &&
    /^\d+$/.test(text(fields.CreateTime) ?? '')
}

/** A field read as text (XML gives numbers for bare digits, JSON either). */
function text (value: unknown): string | undefined {
  return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined
}
