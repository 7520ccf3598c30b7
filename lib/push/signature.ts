/**
 * Push signatures (WECHAT.md §6.2, §6.3):
 *   signature     = sha1(sort([Token, timestamp, nonce]).join(''))
 *   msg_signature = sha1(sort([Token, timestamp, nonce, Encrypt]).join(''))
 * hex, lowercase. Comparisons are constant time (§6.3 last bullet).
 */
import { createHash, timingSafeEqual } from 'node:crypto'

/** sha1 of the lexicographically sorted parts joined with '' (hex lowercase). */
export function pushSignature (parts: string[]): string {
  // Default sort compares UTF-16 code units; every part WeChat signs is ASCII, so that equals byte order.
  return createHash('sha1').update([...parts].sort().join(''), 'utf8').digest('hex')
}

/** Constant-time equality; different lengths are simply unequal (timingSafeEqual would throw). */
function safeEqual (expected: string, given: string): boolean {
  const a = Buffer.from(expected, 'utf8')
  const b = Buffer.from(given, 'utf8')
  return a.length === b.length && timingSafeEqual(a, b)
}

function allStrings (values: unknown[]): values is string[] {
  return values.every((v) => typeof v === 'string')
}

export interface SignatureInput {
  token: string
  timestamp: unknown
  nonce: unknown
  signature: unknown
}

/** Plain `signature` (GET verification and plaintext-mode POST). Non-string input → false. */
export function verifySignature ({ token, timestamp, nonce, signature }: SignatureInput): boolean {
  const parts: unknown[] = [token, timestamp, nonce]
  // An empty token would make the signature computable by anyone: treat as "cannot verify".
  if (!allStrings(parts) || typeof signature !== 'string' || token === '') return false
  return safeEqual(pushSignature(parts), signature)
}

export interface MsgSignatureInput {
  token: string
  timestamp: unknown
  nonce: unknown
  encrypt: unknown
  msgSignature: unknown
}

/** `msg_signature` over the Encrypt field (safe/compatible mode, §6.3). Non-string input → false. */
export function verifyMsgSignature ({ token, timestamp, nonce, encrypt, msgSignature }: MsgSignatureInput): boolean {
  const parts: unknown[] = [token, timestamp, nonce, encrypt]
  if (!allStrings(parts) || typeof msgSignature !== 'string' || token === '') return false
  return safeEqual(pushSignature(parts), msgSignature)
}
