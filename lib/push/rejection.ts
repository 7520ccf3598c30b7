/**
 * The single error type the push building blocks throw for hostile or malformed input.
 * The route maps it to an HTTP status; everything else thrown is a bug (or an options error).
 * Messages are fixed strings per reason: never echo the token, the AES key or attacker input.
 */

export type PushRejectionReason =
  | 'signature' // signature / msg_signature mismatch (WECHAT.md §6.2, §6.3)
  | 'timestamp' // stale or unparsable timestamp query parameter (route-level check)
  | 'decrypt' // Encrypt field not decryptable: bad base64, block size, msg_len (§6.4)
  | 'padding' // PKCS#7 (32-byte block) padding invalid (§6.4 step 4)
  | 'appid' // decrypted tail is not our AppID (§6.4 step 6)
  | 'xml' // XML body refused (malformed, DOCTYPE/ENTITY, wrong root)
  | 'json' // JSON body refused (malformed, not an object)
  | 'format' // parsed fine but the fields are not a push we understand (§7)

const MESSAGES: Record<PushRejectionReason, string> = {
  signature: 'push signature does not match',
  timestamp: 'push timestamp rejected',
  decrypt: 'push ciphertext could not be decrypted',
  padding: 'push ciphertext has invalid padding',
  appid: 'push was encrypted for a different appid',
  xml: 'push body is not acceptable XML',
  json: 'push body is not acceptable JSON',
  format: 'push body has an unexpected format'
}

export class PushRejection extends Error {
  readonly reason: PushRejectionReason
  /** 401 for authentication failures (signature, timestamp), 400 for everything else. */
  readonly statusCode: 400 | 401

  constructor (reason: PushRejectionReason, detail?: string) {
    // `detail` must be a fixed, developer-written string (e.g. a field name), never input data.
    super(detail === undefined ? MESSAGES[reason] : `${MESSAGES[reason]}: ${detail}`)
    this.name = 'PushRejection'
    this.reason = reason
    this.statusCode = reason === 'signature' || reason === 'timestamp' ? 401 : 400
  }
}
