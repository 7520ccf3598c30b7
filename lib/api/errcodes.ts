import type { ErrorClass } from '../errors.js'

/**
 * The one errcode classification every part uses (WECHAT.md §1.3, §1.5, §2.3, DESIGN.md "Error classes").
 * token: drop that exact token, refetch, retry once. transient: backoff and retry.
 * rate: not before 60 s. quota: stop until the daily quota resets. permanent: never retry.
 */
const TOKEN_ERRCODES = new Set([40001, 40014, 42001])
const TRANSIENT_ERRCODES = new Set([-1])
const RATE_ERRCODES = new Set([45011])
const QUOTA_ERRCODES = new Set([45009])

/**
 * An answer's errcode: absent (or null) is a success, an integer or a decimal string (some gateways
 * quote it) is itself. Anything else (`""`, `false`, `[]`, `"abc"`) is no code at all, so -1: never 0,
 * which Number() made of `""`, `false` and `[]`, turning an answer that said nothing into a success.
 */
export function errcodeOf (raw: unknown): number {
  if (raw === undefined || raw === null) return 0
  return codeIn(raw) ?? -1
}

/** The errcode when `raw` is one (an integer, or an integer written as a decimal string), else undefined. */
export function codeIn (raw: unknown): number | undefined {
  if (typeof raw === 'number') return Number.isSafeInteger(raw) ? raw : undefined
  if (typeof raw === 'string' && /^\s*-?\d{1,15}\s*$/.test(raw)) return Number(raw)
  return undefined
}

export function classifyErrcode (errcode: number): ErrorClass {
  if (TOKEN_ERRCODES.has(errcode)) return 'token'
  if (TRANSIENT_ERRCODES.has(errcode)) return 'transient'
  if (RATE_ERRCODES.has(errcode)) return 'rate'
  if (QUOTA_ERRCODES.has(errcode)) return 'quota'
  return 'permanent'
}

/** Whether a later attempt can succeed without anybody changing anything. */
export function isRetryableClass (errorClass: ErrorClass): boolean {
  return errorClass !== 'permanent'
}

/** WeChat's 45011 asks for the next minute (WECHAT.md §2.3). */
export const RATE_LIMIT_DELAY_MS = 60_000

/**
 * What an operator should do about a token-endpoint errcode (WECHAT.md §1.3). Used in
 * FST_WECHAT_TOKEN messages; never includes the secret.
 */
export function tokenErrorAdvice (errcode: number, errmsg: string): string {
  switch (errcode) {
    case 40001:
    case 40125:
      return 'the appSecret is wrong or belongs to another app: check the appSecret option'
    case 40013:
      return 'the appId is invalid: check the appId option for stray characters and letter case'
    case 40164:
    case 61004: {
      const ip = /(?:::ffff:)?\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]*:[0-9a-f:]+/i.exec(errmsg.replace(/rid:.*$/i, ''))
      return `this server's IP${ip ? ` ${ip[0]}` : ''} is not on the mini program's API IP whitelist: add it in MP console → 开发管理 → 开发设置 → IP白名单`
    }
    case 40243:
      return 'the AppSecret is frozen in the MP console; unfreezing takes about 10 minutes'
    case 45009:
      return 'the daily token quota (or the 20-a-day force_refresh budget) is used up; it resets daily or with clear_quota/v2'
    case 45011:
      return 'the per-minute token limit was hit; retrying after 60 s'
    case 89501:
    case 89503:
      return 'WeChat asks an administrator to confirm calls from this IP; configure the IP whitelist'
    case 89506:
    case 89507:
      return 'an administrator rejected calls from this IP; it is blocked for a while'
    case 41002:
    case 41004:
    case 40002:
    case 43002:
    case 47001:
      return 'the token request was malformed (a bug: please report it)'
    case -1:
      return 'WeChat is busy; retrying with backoff'
    default:
      return 'see the errcode in the WeChat documentation'
  }
}

/** Token-endpoint errcodes worth retrying in the same refresh (WECHAT.md §1.3). */
export function isRetryableTokenErrcode (errcode: number): boolean {
  return errcode === -1
}
