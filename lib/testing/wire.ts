import { randomBytes } from 'node:crypto'
import { STATUS_CODES } from 'node:http'

/** One answer, ready to write: the body text is exact (msgid digits included). */
export interface WireResponse {
  status: number
  contentType: string
  body: string
  /** errcode carried by the body, for the request log. */
  errcode?: number
  /**
   * What follows the request once its answer was written, or its connection dropped by a fault:
   * the sent event of an accepted send (internal; not run when the simulator closes first).
   */
  then?: () => void
}

/** WeChat answers JSON with this content type. */
export const JSON_TYPE = 'application/json; encoding=utf-8'

const ADVICE = ', could get access_token by getStableAccessToken, more details at https://mmbizurl.cn/s/JtxxFh33r'

/**
 * Typical errmsg text per errcode (WECHAT.md §0, §1.3, §2.3, §4, §5). A code with no entry gets
 * `UNDOCUMENTED_ERRMSG`: WECHAT.md gives no text for it, so none is made up.
 */
export const ERRMSG: Readonly<Record<number, string>> = {
  [-1]: 'system error',
  40001: 'invalid credential, access_token is invalid or not latest' + ADVICE,
  40002: 'invalid grant_type',
  40003: 'invalid openid',
  40013: 'invalid appid',
  40014: 'invalid access_token',
  40037: 'invalid template_id',
  40125: 'invalid appsecret',
  40164: 'invalid ip, not in whitelist',
  40243: 'AppSecret is frozen',
  41001: 'access_token missing',
  41002: 'appid missing',
  41004: 'appsecret missing',
  41030: 'invalid page',
  42001: 'access_token expired',
  43001: 'require GET method',
  43002: 'require POST method',
  43003: 'require https',
  43101: 'user refuse to accept the msg',
  44002: 'empty post data',
  45009: 'reach max api daily quota limit' + ADVICE,
  45011: 'api minute-quota reach limit, must slower, retry next minute',
  45103: 'This API has been unsupported',
  45168: 'keyword in blacklist',
  47001: 'data format error',
  47003: 'argument invalid!',
  48001: 'api unauthorized',
  48004: 'api forbidden for irregularities',
  48006: 'forbid to clear quota because of reaching the limit',
  50002: 'user limited',
  50004: 'user not allow to use accesstoken, maybe for punishment',
  89501: 'this IP is waiting for admin confirmation',
  89503: "this IP's call needs admin confirmation",
  20001: 'system error',
  20002: 'invalid args',
  200011: 'account is banned',
  200012: 'template count reach limit',
  200013: 'template is banned',
  200014: 'invalid tid',
  200016: 'invalid start',
  200017: 'invalid limit',
  200018: 'missing ids',
  200019: 'invalid ids',
  200020: 'invalid kidList',
  200021: 'invalid sceneDesc'
}

/**
 * errmsg of an errcode WECHAT.md gives no text for (61004, 48017, 45015, 76001, …, or any other code a
 * test injects): neutral, and not -1's "system error", which would make the answer read as a busy WeChat.
 */
export const UNDOCUMENTED_ERRMSG = 'error'

let ridCount = 0

/** A fresh request id: three 8-hex groups joined by `-`. */
export function makeRid (): string {
  const hex = randomBytes(12).toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 16)}-${hex.slice(16)}`
}

/** `text` + rid, alternating the `" rid: "` and `", rid: "` separators as WeChat does. */
export function withRid (text: string): string {
  const sep = ridCount++ % 2 === 0 ? ' rid: ' : ', rid: '
  return `${text}${sep}${makeRid()}`
}

/** A JSON answer written from a value (no 64-bit numbers inside). */
export function json (value: unknown, errcode?: number): WireResponse {
  return { status: 200, contentType: JSON_TYPE, body: JSON.stringify(value), errcode }
}

/** `{"errcode":0,"errmsg":"ok", ...extra}`. */
export function ok (extra: Record<string, unknown> = {}): WireResponse {
  return json({ errcode: 0, errmsg: 'ok', ...extra }, 0)
}

/**
 * An error answer: HTTP 200, `{"errcode":N,"errmsg":"<text> rid: …"}`.
 * @param errcode WeChat errcode
 * @param text errmsg text before the rid; default the typical text of `errcode`
 */
export function wxError (errcode: number, text?: string): WireResponse {
  return json({ errcode, errmsg: withRid(text ?? ERRMSG[errcode] ?? UNDOCUMENTED_ERRMSG) }, errcode)
}

/** 47003 `argument invalid! <detail>`. */
export function argumentInvalid (detail: string): WireResponse {
  return wxError(47003, `argument invalid! ${detail}`)
}

/** A small HTML page with an HTTP status, like the gateway in front of WeChat sends. */
export function httpPage (status: number): WireResponse {
  const line = `${status} ${STATUS_CODES[status] ?? 'Error'}`
  const body = `<html>\r\n<head><title>${line}</title></head>\r\n<body>\r\n<center><h1>${line}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`
  return { status, contentType: 'text/html', body }
}
