/**
 * WeChat push encryption, exactly as WECHAT.md §6.4:
 *   AESKey = base64(EncodingAESKey + '=') → 32 bytes, AES-256-CBC, IV = AESKey[0..16)
 *   plaintext = random(16) ‖ msg_len (uint32 BE, bytes) ‖ msg (UTF-8) ‖ appid
 *   PKCS#7 padding to a multiple of 32 bytes (not AES's 16), so Node's auto padding is off both ways.
 * Decryption of hostile input only ever throws PushRejection; bad options throw a plain Error.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { PushRejection } from './rejection.js'

const BLOCK = 32 // §6.4 step 4: WeChat pads to 32 bytes
const RANDOM_LEN = 16
const HEADER_LEN = RANDOM_LEN + 4
export const ENCODING_AES_KEY = /^[A-Za-z0-9]{43}$/
// Strict standard base64 (§6.4 step 5): alphabet only, padding only at the end; length checked separately.
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Decode the console's 43-char EncodingAESKey (§6.1, §6.4 step 1). Throws a plain Error (options error). */
export function aesKeyFromEncodingAESKey (encodingAESKey: string): Buffer {
  // The message deliberately never contains the key itself.
  if (typeof encodingAESKey !== 'string' || !ENCODING_AES_KEY.test(encodingAESKey)) {
    throw new Error('encodingAESKey must be exactly 43 characters from [A-Za-z0-9]')
  }
  // 43 base64 chars + '=' always decode to exactly 32 bytes, so no length check is needed here.
  return Buffer.from(encodingAESKey + '=', 'base64')
}

function assertKey (key: unknown): asserts key is Buffer {
  if (!Buffer.isBuffer(key) || key.length !== 32) throw new Error('AES key must be a 32-byte Buffer')
}

function assertAppId (appId: unknown): asserts appId is string {
  if (typeof appId !== 'string' || appId === '') throw new Error('appId must be a non-empty string')
}

export interface EncryptOptions {
  key: Buffer
  appId: string
  /** 16 random bytes; injectable so tests and the simulator can be deterministic. */
  random?: Buffer
}

/** Encrypt a push/reply body; returns standard base64 (§6.4 steps 3–5). */
export function encryptMessage (plaintext: string, { key, appId, random = randomBytes(RANDOM_LEN) }: EncryptOptions): string {
  assertKey(key)
  assertAppId(appId)
  if (!Buffer.isBuffer(random) || random.length !== RANDOM_LEN) throw new Error('random must be a 16-byte Buffer')
  const msg = Buffer.from(plaintext, 'utf8')
  const len = Buffer.alloc(4)
  len.writeUInt32BE(msg.length) // byte length, not character length (§6.4 step 3)
  const body = Buffer.concat([random, len, msg, Buffer.from(appId, 'utf8')])
  const n = BLOCK - (body.length % BLOCK) // 1..32; a full block when already aligned
  const cipher = createCipheriv('aes-256-cbc', key, key.subarray(0, 16)) // IV = first 16 bytes (§6.4 step 2)
  cipher.setAutoPadding(false)
  return Buffer.concat([cipher.update(Buffer.concat([body, Buffer.alloc(n, n)])), cipher.final()]).toString('base64')
}

export interface DecryptOptions {
  /** Current key first, then the previous one (§6.4 step 7: rotation). */
  keys: Buffer[]
  appId: string
}

export interface DecryptResult {
  message: string
  /** Index into `keys` of the key that worked, so a reply can be encrypted with the same key. */
  keyIndex: number
}

// How far a key got; when every key fails we report the furthest stage (a wrong appid under the
// right key is more telling than the padding garbage the other key produced).
const STAGES = ['padding', 'decrypt', 'appid']
const stage = (r: PushRejection): number => STAGES.indexOf(r.reason)

function tryKey (ciphertext: Buffer, key: Buffer, appId: Buffer): string | PushRejection {
  const decipher = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16))
  decipher.setAutoPadding(false)
  // Length is a non-zero multiple of 16 (checked by the caller), so update/final cannot throw.
  const plain = Buffer.concat([decipher.update(ciphertext), decipher.final()])
  const n = plain[plain.length - 1]
  // §6.4 step 4: reject n outside 1..32 (the official samples silently use 0) and uneven pad bytes.
  if (n < 1 || n > BLOCK || n > plain.length) return new PushRejection('padding')
  for (let i = plain.length - n; i < plain.length; i++) {
    if (plain[i] !== n) return new PushRejection('padding')
  }
  const content = plain.subarray(0, plain.length - n)
  if (content.length < HEADER_LEN) return new PushRejection('decrypt', 'too short')
  const msgLen = content.readUInt32BE(RANDOM_LEN)
  if (msgLen > content.length - HEADER_LEN) return new PushRejection('decrypt', 'msg_len out of range')
  const end = HEADER_LEN + msgLen
  if (!content.subarray(end).equals(appId)) return new PushRejection('appid')
  try {
    return utf8.decode(content.subarray(HEADER_LEN, end))
  } catch {
    return new PushRejection('decrypt', 'message is not UTF-8')
  }
}

/** Decrypt an `Encrypt` field, trying each key in order (§6.4 step 6, 7). Throws PushRejection only. */
export function decryptMessage (encrypted: string, { keys, appId }: DecryptOptions): DecryptResult {
  if (!Array.isArray(keys) || keys.length === 0) throw new Error('keys must be a non-empty array')
  keys.forEach(assertKey)
  assertAppId(appId)
  if (typeof encrypted !== 'string' || encrypted.length === 0 || encrypted.length % 4 !== 0 || !BASE64.test(encrypted)) {
    throw new PushRejection('decrypt', 'malformed base64')
  }
  const ciphertext = Buffer.from(encrypted, 'base64')
  if (ciphertext.length === 0 || ciphertext.length % 16 !== 0) {
    throw new PushRejection('decrypt', 'ciphertext is not a whole number of blocks')
  }
  const tail = Buffer.from(appId, 'utf8')
  const failures: PushRejection[] = []
  for (let keyIndex = 0; keyIndex < keys.length; keyIndex++) {
    const result = tryKey(ciphertext, keys[keyIndex], tail)
    if (typeof result === 'string') return { message: result, keyIndex }
    failures.push(result)
  }
  throw failures.reduce((worst, next) => stage(next) > stage(worst) ? next : worst)
}
