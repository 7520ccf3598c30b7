import { parse as parseLossless, isSafeNumber } from 'lossless-json'

/**
 * Parse a WeChat JSON answer. `msgid` is a 64-bit integer above 2^53 (WECHAT.md §2.2) that
 * JSON.parse would silently round: it is quoted in place (quotes inside JSON strings are escaped,
 * so the pattern cannot match inside one) and the native parser does the rest. Any other bare long
 * number sends the body through lossless-json, which hands unsafe integers back as decimal strings.
 */
const BARE_LONG_NUMBER = /[:[,]\s*-?\d{16,}/
/** The one big number WeChat sends on every success: quoted in place, so JSON.parse keeps its digits. */
const MSGID = /("msgid"\s*:\s*)(\d+)/

export function parseWechatJson (text: string): unknown {
  const quoted = text.replace(MSGID, '$1"$2"')
  if (!BARE_LONG_NUMBER.test(quoted)) return JSON.parse(quoted)
  return parseLossless(text, null, (value: string) => isSafeNumber(value) ? Number(value) : value)
}

/** Build a JSON body; kept here so every request encodes the same way. */
export function toJsonBody (value: unknown): string {
  return JSON.stringify(value)
}
