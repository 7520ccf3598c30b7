import { randomInt } from 'node:crypto'
import { aesKeyFromEncodingAESKey } from '../push/crypto.js'
import { buildEncryptedEnvelope, buildPushBody } from '../push/envelope.js'
import { pushSignature } from '../push/signature.js'
import type { SimPushOptions, SimPushRequest } from './push.js'
import { assertPushOptions } from './push-config.js'

/** The mini program's original id the simulator's pushes carry as `ToUserName` unless `toUserName` is given. */
export const DEFAULT_TO_USER_NAME = 'gh_000000000000'

/**
 * Build a push exactly as WeChat sends it (§6.3): plaintext body + `signature`, or the encrypted
 * envelope + `encrypt_type=aes` + `msg_signature` (compatible mode keeps the plaintext fields too).
 * WeChat may add parameters such as `openid`; this does, so apps are tested to ignore them.
 */
export function buildSimPush (event: object, options: SimPushOptions, appId: string, nowMs: number): SimPushRequest {
  assertPushOptions('sim.push', options)
  const token = options.token as string
  const mode = options.mode ?? (options.encodingAESKey === undefined ? 'plaintext' : 'safe')
  const format = options.format ?? 'xml'
  const timestamp = String(options.timestamp ?? Math.floor(nowMs / 1000))
  const nonce = options.nonce ?? String(randomInt(1_000_000_000, 10_000_000_000))
  let body: string
  let query: Record<string, string>
  if (mode === 'plaintext') {
    body = buildPushBody(event, { format })
    query = { signature: pushSignature([token, timestamp, nonce]), timestamp, nonce }
  } else {
    if (options.encodingAESKey === undefined) throw new TypeError(`sim.push: mode '${mode}' needs encodingAESKey`)
    const key = aesKeyFromEncodingAESKey(options.encodingAESKey)
    const envelope = buildEncryptedEnvelope(event, { format, token, key, appId: options.appId ?? appId, timestamp, nonce, compatible: mode === 'compatible' })
    body = envelope.body
    query = { ...envelope.query }
  }
  const openid = (event as { FromUserName?: unknown }).FromUserName
  if (typeof openid === 'string') query.openid = openid
  return { url: `${options.path ?? '/wechat/push'}?${new URLSearchParams(query).toString()}`, body, contentType: format === 'json' ? 'application/json' : 'text/xml' }
}
