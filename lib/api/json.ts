import { parse as parseLossless, isSafeNumber } from 'lossless-json'

/**
 * Parse a WeChat JSON answer. `msgid` is a 64-bit integer above 2^53 (WECHAT.md §2.2) that
 * JSON.parse would silently round: it is quoted in place (quotes inside JSON strings are escaped,
 * so the pattern cannot match inside one) and the native parser does the rest. Any other bare long
 * number sends the body through lossless-json, which hands unsafe integers back as decimal strings.
 */
const BARE_LONG_NUMBER = /[:[,]\s*-?\d{16,}/
/**
 * The one big number WeChat sends on every success: quoted in place, so JSON.parse keeps its digits.
 * The whole JSON number is taken (a fraction or an exponent too): quoting only its leading digits
 * would leave invalid JSON, and a success read as a broken answer is sent again.
 */
const MSGID = /("msgid"\s*:\s*)(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/

/**
 * Fast path for the answer nearly every call gets, `{"errcode":0,"errmsg":"ok","msgid":…}` (errcode,
 * errmsg and an optional msgid, compact): read by one anchored pattern instead of a replace, a test
 * and a parse. Only what JSON.parse would read the same way matches (a JSON integer, a string with no
 * escapes or control characters); anything else takes the general path below.
 */
// eslint-disable-next-line no-control-regex -- JSON forbids raw control characters in strings: such text must take the general path
const COMMON_ANSWER = /^\{"errcode":(-?(?:0|[1-9]\d{0,8})),"errmsg":"([^"\\\u0000-\u001f]*)"(?:,"msgid":(\d+))?\}$/

export function parseWechatJson (text: string): unknown {
  const common = COMMON_ANSWER.exec(text)
  if (common !== null) {
    const msgid = common[3]
    return msgid === undefined
      ? { errcode: Number(common[1]), errmsg: common[2] }
      : { errcode: Number(common[1]), errmsg: common[2], msgid }
  }
  const quoted = text.replace(MSGID, '$1"$2"')
  const parsed = BARE_LONG_NUMBER.test(quoted)
    ? parseLossless(quoted, null, (value: string) => isSafeNumber(value) ? Number(value) : value)
    : JSON.parse(quoted)
  const msgid = (parsed as { msgid?: unknown } | null)?.msgid
  if (typeof msgid === 'string' && !DECIMAL_INTEGER.test(msgid)) (parsed as { msgid: string }).msgid = integerText(msgid)
  return parsed
}

const DECIMAL_INTEGER = /^\d+$/
const NUMBER_PARTS = /^(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/

/**
 * A msgid WeChat wrote as `123.0` or `2.1e18` back to its decimal digits, exactly (string arithmetic,
 * no float); a value that is not a whole number is kept as written.
 */
export function integerText (text: string): string {
  const parts = NUMBER_PARTS.exec(text)
  if (parts === null) return text
  const [, whole = '', fraction = '', exponent = '0'] = parts
  const shift = Number(exponent)
  const digits = whole + fraction
  const point = whole.length + shift
  if (!Number.isSafeInteger(shift) || point < 0 || point > 40) return text
  const integer = point >= digits.length ? digits + '0'.repeat(point - digits.length) : digits.slice(0, point)
  if (/[1-9]/.test(digits.slice(point))) return text
  return integer.replace(/^0+(?=\d)/, '')
}

/** Build a JSON body; kept here so every request encodes the same way. */
export function toJsonBody (value: unknown): string {
  return JSON.stringify(value)
}
