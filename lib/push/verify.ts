/**
 * The request-level checks of the push endpoint, free of Fastify so they can be tested and fuzzed on
 * their own: signatures (WECHAT.md §6.2, §6.3), replay window, mode rules (§6.1) and decryption (§6.4).
 * Hostile input only ever throws PushRejection.
 */
import { aesKeyFromEncodingAESKey, decryptMessage } from './crypto.js'
import { parseJson, parseXml } from './parse.js'
import { PushRejection } from './rejection.js'
import { verifyMsgSignature, verifySignature } from './signature.js'

export interface PushCheckConfig {
  token: string
  mode: 'plaintext' | 'compatible' | 'safe'
  /** Current key first, then the previous one (§6.4 step 7); empty in plaintext mode without a key. */
  keys: Buffer[]
  appId: string
  replayWindowMs: number
}

export function checkConfig (push: { token: string, mode: PushCheckConfig['mode'], encodingAESKey?: string, previousEncodingAESKey?: string, replayWindowMs: number }, appId: string): PushCheckConfig {
  const keys = [push.encodingAESKey, push.previousEncodingAESKey].filter((k): k is string => k !== undefined).map(aesKeyFromEncodingAESKey)
  return { token: push.token, mode: push.mode, keys, appId, replayWindowMs: push.replayWindowMs }
}

/** The parsed query string (Fastify's parser: a repeated parameter arrives as an array). */
export type PushQuery = Record<string, unknown>

/** A query parameter only counts when it was given exactly once. */
function param (query: PushQuery, name: string): string | undefined {
  const value = query[name]
  return typeof value === 'string' ? value : undefined
}

/**
 * `timestamp` (Unix seconds) must be within ±window of our clock. Not a WeChat rule: it bounds how
 * long a captured, validly signed request can be replayed; dedupe covers the window itself. A window
 * of 0 turns the range check off (a test WeChat on a frozen clock, a host whose clock cannot be trusted).
 */
export function checkTimestamp (query: PushQuery, now: number, windowMs: number): void {
  const timestamp = param(query, 'timestamp')
  if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp)) throw new PushRejection('timestamp', 'missing or not Unix seconds')
  // In whole seconds, as WeChat stamps a push: against the clock in ms, "exactly 5 min old" was out
  // unless it landed on a whole second, while "exactly 5 min ahead" was in.
  if (windowMs > 0 && Math.abs(Number(timestamp) - Math.floor(now / 1000)) * 1000 > windowMs) throw new PushRejection('timestamp', 'outside the replay window')
}

/**
 * The plain `signature` over token, timestamp, nonce (§6.2, plaintext-mode POST §6.3). `now` undefined:
 * no replay window (the GET check, see verifyEcho).
 */
function requireSignature (query: PushQuery, config: PushCheckConfig, now: number | undefined): void {
  const ok = verifySignature({ token: config.token, timestamp: param(query, 'timestamp'), nonce: param(query, 'nonce'), signature: param(query, 'signature') })
  if (!ok) throw new PushRejection('signature')
  if (now !== undefined) checkTimestamp(query, now, config.replayWindowMs)
}

/** `msg_signature` over token, timestamp, nonce and the ciphertext (§6.3), then decrypt (§6.4). */
function openEncrypted (query: PushQuery, encrypt: string, config: PushCheckConfig): string {
  const ok = verifyMsgSignature({ token: config.token, timestamp: param(query, 'timestamp'), nonce: param(query, 'nonce'), encrypt, msgSignature: param(query, 'msg_signature') })
  if (!ok) throw new PushRejection('signature')
  // The signature is checked first, so a stranger never reaches the padding check (no padding oracle).
  return decryptMessage(encrypt, { keys: config.keys, appId: config.appId }).message
}

/**
 * Everything about a POST that can be checked without its body, so a stranger's request is refused
 * before the body is read or parsed (parsing a large many-element body costs milliseconds of CPU).
 * Plaintext mode: the plain `signature` and the replay window. Safe/compatible mode: the replay
 * window, `msg_signature` present and shaped like a sha1 (it is verified against Encrypt once the
 * body is parsed), and the plain `signature` when it is there: WeChat sends it too (§6.3 "also
 * carries"), but §6.3 verifies these modes by msg_signature alone, so a push without it is not
 * refused for that.
 */
export function checkPushQuery (query: PushQuery, config: PushCheckConfig, now: number): void {
  if (config.mode === 'plaintext' || param(query, 'signature') !== undefined) requireSignature(query, config, now)
  else checkTimestamp(query, now, config.replayWindowMs)
  if (config.mode === 'plaintext') return
  if (config.mode === 'safe' && param(query, 'encrypt_type') !== 'aes') throw new PushRejection('signature', 'safe mode needs encrypt_type=aes')
  if (!/^[0-9a-f]{40}$/.test(param(query, 'msg_signature') ?? '')) throw new PushRejection('signature')
}

/**
 * GET URL verification (§6.2): the plain signature, echoing the raw echostr, in every mode. WeCom's
 * form (msg_signature + encrypted echostr) is not accepted: there is no evidence of it for mini
 * programs, and it would decrypt any captured safe-mode push replayed as a GET (its msg_signature
 * already covers exactly that ciphertext), with no replay window: a decryption oracle.
 * No replay window here: replaying a captured check only echoes text back and changes nothing, while
 * the window would refuse §6.2's own worked example (timestamp 1714036504) on any real clock.
 */
export function verifyEcho (query: PushQuery, config: PushCheckConfig): string {
  requireSignature(query, config, undefined)
  const echostr = param(query, 'echostr')
  if (echostr === undefined || echostr === '') throw new PushRejection('format', 'echostr is missing')
  return echostr
}

/**
 * XML when the body starts with `<` (after a BOM and whitespace), JSON otherwise (§6.1: both formats
 * exist), so a JSON value that is not an object (`[]`, `null`, `"text"`) is refused as "not a JSON
 * object" rather than as bad XML, and an empty body as empty.
 */
export function parseBody (text: string): Record<string, unknown> {
  // A UTF-8 byte order mark is not JSON whitespace; the XML parser already skips it.
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text
  const first = /\S/.exec(body)
  if (first === null) throw new PushRejection('format', 'the body is empty')
  return first[0] === '<' ? parseXml(body) : parseJson(body)
}

/**
 * Authenticate a POST and return the parsed push (§6.3), after checkPushQuery:
 * - plaintext: plain `signature`; the body is the message.
 * - safe: `encrypt_type=aes` + `msg_signature` over the Encrypt field; the message is the decrypted text.
 * - compatible: WeChat sends both forms (§6.1), so Encrypt and its msg_signature are required as in
 *   safe mode and the plaintext copy is ignored. The plain `signature` covers no body: accepting a
 *   body without Encrypt on it alone would let anyone holding one logged push URL forge pushes for
 *   the whole replay window. Only a plaintext-mode configuration accepts a body without Encrypt.
 */
export function openPush (query: PushQuery, text: string, config: PushCheckConfig, now: number): Record<string, unknown> {
  checkPushQuery(query, config, now)
  const outer = parseBody(text)
  if (config.mode === 'plaintext') return outer
  if (typeof outer.Encrypt !== 'string') throw new PushRejection('format', 'Encrypt must be a string')
  return parseBody(openEncrypted(query, outer.Encrypt, config))
}
