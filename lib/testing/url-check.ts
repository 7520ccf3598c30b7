import { randomInt } from 'node:crypto'
import { pushSignature } from '../push/signature.js'
import { assertFields, assertOptionalString, isPlainObject } from './args.js'
import type { FieldNames } from './args.js'

/**
 * The URL check WeChat makes when the push URL is saved in the MP console (消息推送配置, WECHAT.md
 * §6.2): a GET carrying `signature` (over Token, timestamp, nonce) and an `echostr` the app must echo.
 * The same in every encryption mode.
 */
export interface SimUrlCheckOptions {
  /** The Token shared with the app (required here or in `pushConfig`). */
  token?: string
  /** Path of the app's push endpoint; default `'/wechat/push'`. */
  path?: string
  /** `timestamp` query parameter, Unix seconds (an integer); default the simulator clock. */
  timestamp?: number
  /** `nonce` query parameter; default 10 random digits. */
  nonce?: string
  /** The text the app must echo; default 19 random digits (WeChat's are long numbers). */
  echostr?: string
}

/** A signed URL check, ready to GET or to `app.inject`, and the body the app must answer with. */
export interface SimUrlCheckRequest {
  /** Path plus query string. */
  url: string
  echostr: string
}

/** The app's answer to a URL check. `ok`: a 2xx whose body is exactly the echostr (the console saves). */
export interface SimUrlCheckResult {
  ok: boolean
  /** HTTP status; 0 when no answer came within 5 s (timeout, connection refused or dropped, simulator closing). */
  statusCode: number
  body: string
  echostr: string
}

const CHECK_FIELDS: FieldNames<SimUrlCheckOptions> = { token: true, path: true, timestamp: true, nonce: true, echostr: true }

/**
 * Build the GET WeChat sends to verify a push URL (§6.2), signed with `token`.
 * @example
 * const check = buildSimUrlCheck({ token: 'AAAAA' }, Date.now())
 * const res = await app.inject({ method: 'GET', url: check.url })
 * assert.equal(res.body, check.echostr)
 * @throws TypeError naming a bad option
 */
export function buildSimUrlCheck (input: SimUrlCheckOptions, nowMs: number): SimUrlCheckRequest {
  const where = 'sim.checkPushUrl'
  if (!isPlainObject(input)) throw new TypeError(`${where}: options must be an object`)
  const options = input as SimUrlCheckOptions
  assertFields(options, CHECK_FIELDS, where, 'options', 'option')
  if (typeof options.token !== 'string' || options.token === '') throw new TypeError(`${where}: token is required (in the options or in pushConfig)`)
  if (options.path !== undefined && (typeof options.path !== 'string' || !options.path.startsWith('/'))) throw new TypeError(`${where}: path must be a string starting with /`)
  if (options.timestamp !== undefined && (!Number.isSafeInteger(options.timestamp) || options.timestamp < 0)) throw new TypeError(`${where}: timestamp must be an integer >= 0 (Unix seconds)`)
  assertOptionalString(options.nonce, where, 'nonce')
  assertOptionalString(options.echostr, where, 'echostr')
  const timestamp = String(options.timestamp ?? Math.floor(nowMs / 1000))
  const nonce = options.nonce ?? String(randomInt(1_000_000_000, 10_000_000_000))
  const echostr = options.echostr ?? randomDigits(19)
  const query = new URLSearchParams({ signature: pushSignature([options.token, timestamp, nonce]), echostr, timestamp, nonce })
  return { url: `${options.path ?? '/wechat/push'}?${query.toString()}`, echostr }
}

function randomDigits (n: number): string {
  let digits = String(randomInt(1, 10))
  while (digits.length < n) digits += String(randomInt(0, 10))
  return digits
}
