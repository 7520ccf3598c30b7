import { parse as parseLossless, isSafeNumber } from 'lossless-json'

/**
 * Parse a WeChat JSON answer. `msgid` is a 64-bit integer above 2^53 (WECHAT.md §2.2) that
 * JSON.parse would silently round, so any body with a long digit run goes through lossless-json,
 * which hands unsafe integers back as decimal strings. Plain bodies keep the fast native path.
 */
const LONG_DIGITS = /\d{16,}/

export function parseWechatJson (text: string): unknown {
  if (!LONG_DIGITS.test(text)) return JSON.parse(text)
  return parseLossless(text, null, (value: string) => isSafeNumber(value) ? Number(value) : value)
}

/** Build a JSON body; kept here so every request encodes the same way. */
export function toJsonBody (value: unknown): string {
  return JSON.stringify(value)
}
