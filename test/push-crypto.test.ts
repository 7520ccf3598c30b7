import { test } from 'tap'
import { createCipheriv, createDecipheriv } from 'node:crypto'
import { pushSignature, verifySignature, verifyMsgSignature } from '../lib/push/signature.js'
import { aesKeyFromEncodingAESKey, encryptMessage, decryptMessage } from '../lib/push/crypto.js'
import { PushRejection } from '../lib/push/rejection.js'

const ENCODING_KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG'
const PREVIOUS_ENCODING_KEY = 'ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut'
const KEY = aesKeyFromEncodingAESKey(ENCODING_KEY)
const PREVIOUS_KEY = aesKeyFromEncodingAESKey(PREVIOUS_ENCODING_KEY)
const APPID = 'wx1234567890abcdef' // 18 bytes
const RANDOM = Buffer.alloc(16, 7)

/** The reason of the PushRejection thrown by fn; any other outcome fails the test by rethrowing. */
function rejectionOf (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof PushRejection) return err.reason
    throw err
  }
  throw new Error('expected a PushRejection')
}

// Raw AES-256-CBC without padding, to craft and inspect the exact plaintext layout (WECHAT.md §6.4).
function rawEncrypt (plain: Buffer, key = KEY): string {
  const cipher = createCipheriv('aes-256-cbc', key, key.subarray(0, 16))
  cipher.setAutoPadding(false)
  return Buffer.concat([cipher.update(plain), cipher.final()]).toString('base64')
}
function rawDecrypt (encrypted: string, key = KEY): Buffer {
  const decipher = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16))
  decipher.setAutoPadding(false)
  return Buffer.concat([decipher.update(Buffer.from(encrypted, 'base64')), decipher.final()])
}
/** random ‖ msg_len ‖ msg ‖ appid, with correct 32-byte PKCS#7 unless `pad` overrides it. */
function frame (msg: Buffer, { appId = APPID, msgLen = msg.length, pad }: { appId?: string, msgLen?: number, pad?: Buffer } = {}): Buffer {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(msgLen)
  const body = Buffer.concat([RANDOM, len, msg, Buffer.from(appId)])
  const n = 32 - (body.length % 32)
  return Buffer.concat([body, pad ?? Buffer.alloc(n, n)])
}

test('signature: documented vector (WECHAT.md §6.2)', async (t) => {
  const parts = ['AAAAA', '1714036504', '1514711492']
  t.equal(pushSignature(parts), 'f464b24fc39322e44b38aa78f5edd27bd1441696')
  t.same(parts, ['AAAAA', '1714036504', '1514711492'], 'input is not sorted in place')
  const input = { token: 'AAAAA', timestamp: '1714036504', nonce: '1514711492' }
  t.ok(verifySignature({ ...input, signature: 'f464b24fc39322e44b38aa78f5edd27bd1441696' }))
  t.notOk(verifySignature({ ...input, signature: 'f464b24fc39322e44b38aa78f5edd27bd1441697' }), 'one hex digit off')
  t.notOk(verifySignature({ ...input, signature: 'f464b24f' }), 'different length, no throw')
  t.notOk(verifySignature({ ...input, signature: '' }))
  t.notOk(verifySignature({ ...input, signature: undefined }), 'missing signature')
  t.notOk(verifySignature({ ...input, nonce: ['1514711492'], signature: 'f464b24fc39322e44b38aa78f5edd27bd1441696' }), 'array query value')
  t.notOk(verifySignature({ ...input, token: '', signature: pushSignature(['', input.timestamp, input.nonce]) }), 'empty token never verifies')
  t.notOk(verifySignature({ ...input, signature: 'ф'.repeat(40) }), 'multi-byte string of the same char length')
})

test('msg_signature covers Encrypt (WECHAT.md §6.3)', async (t) => {
  const base = { token: 'tok', timestamp: '1767225600', nonce: '42', encrypt: 'QUJD' }
  const msgSignature = pushSignature(['tok', '1767225600', '42', 'QUJD'])
  t.ok(verifyMsgSignature({ ...base, msgSignature }))
  t.notOk(verifyMsgSignature({ ...base, encrypt: 'QUJE', msgSignature }), 'different Encrypt')
  t.notOk(verifyMsgSignature({ ...base, msgSignature: msgSignature.slice(1) }))
  t.notOk(verifyMsgSignature({ ...base, encrypt: 123, msgSignature }))
  t.notOk(verifyMsgSignature({ ...base, msgSignature: null }))
  t.notOk(verifyMsgSignature({ ...base, token: '', msgSignature: pushSignature(['', '1767225600', '42', 'QUJD']) }))
  t.notOk(verifySignature({ token: 'tok', timestamp: '1767225600', nonce: '42', signature: msgSignature }), 'msg_signature is not a signature')
})

test('aesKeyFromEncodingAESKey (WECHAT.md §6.1, §6.4 step 1)', async (t) => {
  t.equal(KEY.length, 32)
  t.same(KEY, Buffer.from(ENCODING_KEY + '=', 'base64'))
  for (const bad of ['', ENCODING_KEY.slice(1), ENCODING_KEY + 'A', ENCODING_KEY.slice(1) + '+', ENCODING_KEY.slice(1) + '=', 42]) {
    t.throws(() => aesKeyFromEncodingAESKey(bad as string), { message: /43 characters/ })
    try {
      aesKeyFromEncodingAESKey(bad as string)
    } catch (err) {
      t.notOk(err instanceof PushRejection, 'an options error, not a push rejection')
      if (typeof bad === 'string' && bad.length > 0) t.notMatch((err as Error).message, bad, 'message never contains the key')
    }
  }
})

test('round trip for every padding length 1..32 (WECHAT.md §6.4 step 4)', async (t) => {
  const seen = new Set<number>()
  for (let n = 1; n <= 32; n++) {
    const msgLen = (((32 - n - 20 - APPID.length) % 32) + 32) % 32
    const plaintext = 'x'.repeat(msgLen)
    const encrypted = encryptMessage(plaintext, { key: KEY, appId: APPID, random: RANDOM })
    const raw = rawDecrypt(encrypted)
    t.equal(raw.length % 32, 0, 'padded to 32-byte blocks, not 16')
    t.equal(raw[raw.length - 1], n, `pad length ${n}`)
    t.same(raw.subarray(raw.length - n), Buffer.alloc(n, n))
    t.same(raw.subarray(0, 16), RANDOM, 'random prefix')
    t.equal(raw.readUInt32BE(16), msgLen, 'msg_len')
    t.same(decryptMessage(encrypted, { keys: [KEY], appId: APPID }), { message: plaintext, keyIndex: 0 })
    seen.add(raw[raw.length - 1])
  }
  t.equal(seen.size, 32)
})

test('random prefix defaults to fresh bytes', async (t) => {
  const a = encryptMessage('same', { key: KEY, appId: APPID })
  const b = encryptMessage('same', { key: KEY, appId: APPID })
  t.not(a, b)
  t.equal(decryptMessage(a, { keys: [KEY], appId: APPID }).message, 'same')
})

test('CJK and emoji: msg_len counts UTF-8 bytes, not characters', async (t) => {
  for (const message of ['订阅消息提醒', '✅🎉 emoji 🧧', '<xml><Content><![CDATA[你好 👋]]></Content></xml>', '\uFEFFbom kept']) {
    const encrypted = encryptMessage(message, { key: KEY, appId: APPID, random: RANDOM })
    const raw = rawDecrypt(encrypted)
    t.equal(raw.readUInt32BE(16), Buffer.byteLength(message, 'utf8'))
    t.not(Buffer.byteLength(message, 'utf8'), message.length)
    t.equal(decryptMessage(encrypted, { keys: [KEY], appId: APPID }).message, message)
  }
})

test('key rotation: previous key is tried second (WECHAT.md §6.4 step 7)', async (t) => {
  const old = encryptMessage('from old key', { key: PREVIOUS_KEY, appId: APPID })
  t.same(decryptMessage(old, { keys: [KEY, PREVIOUS_KEY], appId: APPID }), { message: 'from old key', keyIndex: 1 })
  const current = encryptMessage('from new key', { key: KEY, appId: APPID })
  t.same(decryptMessage(current, { keys: [KEY, PREVIOUS_KEY], appId: APPID }), { message: 'from new key', keyIndex: 0 })
  t.ok(['padding', 'decrypt', 'appid'].includes(rejectionOf(() => decryptMessage(old, { keys: [KEY], appId: APPID }))))
})

test('wrong appid, whichever key order (WECHAT.md §6.4 step 6)', async (t) => {
  const other = encryptMessage('hello', { key: KEY, appId: 'wxOTHERAPP000000000', random: RANDOM })
  t.equal(rejectionOf(() => decryptMessage(other, { keys: [KEY], appId: APPID })), 'appid')
  // The furthest stage reached by any key is reported, not the wrong key's padding garbage.
  t.equal(rejectionOf(() => decryptMessage(other, { keys: [KEY, PREVIOUS_KEY], appId: APPID })), 'appid')
  t.equal(rejectionOf(() => decryptMessage(other, { keys: [PREVIOUS_KEY, KEY], appId: APPID })), 'appid')
  const prefix = encryptMessage('hello', { key: KEY, appId: APPID + 'x' })
  t.equal(rejectionOf(() => decryptMessage(prefix, { keys: [KEY], appId: APPID })), 'appid', 'appid must match exactly')
})

test('tampered ciphertext', async (t) => {
  const msg = 'x'.repeat(((32 - 16 - 20 - APPID.length) % 32 + 32) % 32) // pad n = 16
  const encrypted = Buffer.from(encryptMessage(msg, { key: KEY, appId: APPID, random: RANDOM }), 'base64')
  const flip = (i: number): string => {
    const copy = Buffer.from(encrypted)
    copy[i] ^= 1
    return copy.toString('base64')
  }
  // CBC: flipping ciphertext byte i flips plaintext byte i + 16, i.e. byte 0 → msg_len's top byte.
  t.equal(rejectionOf(() => decryptMessage(flip(0), { keys: [KEY], appId: APPID })), 'decrypt')
  t.equal(rejectionOf(() => decryptMessage(flip(encrypted.length - 17), { keys: [KEY], appId: APPID })), 'padding', 'last pad byte 16 → 17')
  t.equal(rejectionOf(() => decryptMessage(flip(encrypted.length - 1), { keys: [KEY], appId: APPID })), 'padding', 'garbage last block')
})

test('crafted padding, length and UTF-8 errors', async (t) => {
  const dec = (plain: Buffer): string => rejectionOf(() => decryptMessage(rawEncrypt(plain), { keys: [KEY], appId: APPID }))
  const body = frame(Buffer.from('hi')).subarray(0, 20 + 2 + APPID.length) // 40 bytes, needs pad 24
  t.equal(dec(Buffer.concat([body, Buffer.alloc(24, 0)])), 'padding', 'n = 0')
  t.equal(dec(Buffer.concat([body, Buffer.alloc(23, 33), Buffer.from([33])])), 'padding', 'n = 33')
  t.equal(dec(Buffer.concat([body, Buffer.alloc(23, 0), Buffer.from([24])])), 'padding', 'pad bytes differ from n')
  t.equal(dec(Buffer.concat([body, Buffer.alloc(7, 0), Buffer.alloc(17, 24)])), 'padding', 'only some pad bytes equal n')
  t.equal(dec(Buffer.concat([Buffer.alloc(15, 20), Buffer.from([20])])), 'padding', 'n larger than the plaintext')
  t.equal(dec(Buffer.alloc(32, 16)), 'decrypt', 'shorter than random + msg_len')
  t.equal(dec(frame(Buffer.from('hi'), { msgLen: 1000 })), 'decrypt', 'msg_len beyond the data')
  t.equal(dec(frame(Buffer.from('hi'), { msgLen: 0xffffffff })), 'decrypt', 'msg_len 2^32-1')
  t.equal(dec(frame(Buffer.from([0xff, 0xfe, 0x80]))), 'decrypt', 'invalid UTF-8')
  t.equal(decryptMessage(rawEncrypt(frame(Buffer.from('ok'))), { keys: [KEY], appId: APPID }).message, 'ok', 'control: the crafted frame is valid')
  t.equal(decryptMessage(rawEncrypt(frame(Buffer.alloc(0))), { keys: [KEY], appId: APPID }).message, '', 'empty message')
})

test('malformed base64 and ciphertext length', async (t) => {
  const valid = encryptMessage('hello', { key: KEY, appId: APPID })
  const cases: Array<[string, unknown]> = [
    ['empty string', ''],
    ['truncated by one char', valid.slice(0, -1)],
    ['truncated by 4 chars', valid.slice(0, -4)],
    ['truncated to one block minus', valid.slice(0, 20)],
    ['non-base64', '!!!!'],
    ['url-safe alphabet', valid.replace(/\+/g, '-').replace(/\//g, '_').replace(/^./, '-')],
    ['whitespace inside', valid.slice(0, 8) + '\n' + valid.slice(9)],
    ['padding in the middle', 'AA==' + valid.slice(4)],
    ['too much padding', 'A==='],
    ['one byte', 'AA=='],
    ['not a string', 12345],
    ['undefined', undefined]
  ]
  for (const [name, input] of cases) {
    t.equal(rejectionOf(() => decryptMessage(input as string, { keys: [KEY], appId: APPID })), 'decrypt', name)
  }
})

test('options errors are plain Errors and never leak the key', async (t) => {
  const valid = encryptMessage('hello', { key: KEY, appId: APPID })
  const cases: Array<[string, () => unknown]> = [
    ['no keys', () => decryptMessage(valid, { keys: [], appId: APPID })],
    ['keys not an array', () => decryptMessage(valid, { keys: KEY as unknown as Buffer[], appId: APPID })],
    ['16-byte key', () => decryptMessage(valid, { keys: [KEY.subarray(0, 16)], appId: APPID })],
    ['string key', () => decryptMessage(valid, { keys: [ENCODING_KEY as unknown as Buffer], appId: APPID })],
    ['empty appId', () => decryptMessage(valid, { keys: [KEY], appId: '' })],
    ['encrypt: bad key', () => encryptMessage('x', { key: Buffer.alloc(31), appId: APPID })],
    ['encrypt: bad appId', () => encryptMessage('x', { key: KEY, appId: undefined as unknown as string })],
    ['encrypt: bad random', () => encryptMessage('x', { key: KEY, appId: APPID, random: Buffer.alloc(8) })]
  ]
  for (const [name, fn] of cases) {
    try {
      fn()
      t.fail(name)
    } catch (err) {
      t.equal((err as Error).constructor, Error, name)
      t.notMatch((err as Error).message, ENCODING_KEY, name)
      t.notMatch((err as Error).message, KEY.toString('hex'), name)
    }
  }
})

test('PushRejection shape', async (t) => {
  const signature = new PushRejection('signature')
  t.equal(signature.statusCode, 401)
  t.equal(new PushRejection('timestamp').statusCode, 401)
  t.equal(new PushRejection('padding').statusCode, 400)
  t.equal(signature.name, 'PushRejection')
  t.ok(signature instanceof Error)
  t.equal(new PushRejection('decrypt', 'too short').message, 'push ciphertext could not be decrypted: too short')
})

// mulberry32: a tiny seeded PRNG so a failing fuzz case can be replayed from its seed.
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), a | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

test('fuzz: decryptMessage only ever throws PushRejection', async (t) => {
  const SEED = 20260101
  const rand = prng(SEED)
  const int = (n: number): number => Math.floor(rand() * n)
  const valid = Buffer.from(encryptMessage('<xml><A>1</A></xml>', { key: KEY, appId: APPID, random: RANDOM }), 'base64')
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n%'
  const reasons = new Map<string, number>()
  let ok = 0
  for (let i = 0; i < 6000; i++) {
    let input: string
    const kind = i % 4
    if (kind === 0) {
      input = Array.from({ length: int(120) }, () => alphabet[int(alphabet.length)]).join('')
    } else if (kind === 1) {
      input = Buffer.from(Array.from({ length: 16 * (1 + int(8)) }, () => int(256))).toString('base64')
    } else if (kind === 2) {
      const copy = Buffer.from(valid)
      for (let j = 0, m = 1 + int(3); j < m; j++) copy[int(copy.length)] ^= 1 << int(8)
      input = copy.toString('base64')
    } else {
      input = valid.subarray(0, int(valid.length + 1)).toString('base64')
    }
    try {
      decryptMessage(input, { keys: [KEY, PREVIOUS_KEY], appId: APPID })
      ok++
    } catch (err) {
      if (!(err instanceof PushRejection)) {
        t.fail(`seed ${SEED} iteration ${i}: ${String(err)} for ${JSON.stringify(input)}`)
        return
      }
      reasons.set(err.reason, (reasons.get(err.reason) ?? 0) + 1)
    }
  }
  t.ok(reasons.has('decrypt') && reasons.has('padding'), `reasons seen: ${JSON.stringify([...reasons])}, ok ${ok}`)
})
