/**
 * ≥10,000 seeded random requests through app.inject, for each mode: every answer is a 4xx, or 200
 * `success` for a push that is valid; never a 500, never a crash. Valid pushes are mixed in so the
 * accepting path is fuzzed too.
 */
import { test } from 'tap'
import type { Test } from 'tap'
import { aesKeyFromEncodingAESKey, encryptMessage } from '../lib/push/crypto.js'
import { buildPushBody } from '../lib/push/envelope.js'
import { pushSignature } from '../lib/push/signature.js'
import { buildSimPush } from '../lib/testing/index.js'
import { startSimulator } from './helpers/app.js'
import { KEY, OLD_KEY, pushApp, settle, TOKEN } from './push-helpers.js'

const NOW = 1767225600_000
const TS = String(NOW / 1000)
const PER_MODE = 3500

/** mulberry32: small, seeded, good enough to spread inputs. */
function prng (seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6D2B79F5) | 0
    let r = Math.imul(a ^ (a >>> 15), 1 | a)
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296
  }
}

class Gen {
  readonly next: () => number
  constructor (seed: number) { this.next = prng(seed) }
  int (n: number): number { return Math.floor(this.next() * n) }
  pick<T> (list: readonly T[]): T { return list[this.int(list.length)] }
  chance (p: number): boolean { return this.next() < p }

  text (max = 24): string {
    const alphabets = ['abcXYZ019', '<>&;"\'/![]{}:,=', '\u0000\u0001\u007f\uffff\ud800', '中文订阅消息😀', ' \t\r\n']
    let s = ''
    for (let i = this.int(max); i > 0; i--) s += this.pick([...this.pick(alphabets)])
    return s
  }

  bytes (max: number): string {
    let s = ''
    for (let i = this.int(max); i > 0; i--) s += String.fromCharCode(this.int(256))
    return s
  }

  mutate (s: string, edits = 1 + this.int(4)): string {
    let out = s
    for (let i = 0; i < edits; i++) {
      const at = this.int(out.length + 1)
      switch (this.int(5)) {
        case 0: out = out.slice(0, at) + this.text(4) + out.slice(at); break
        case 1: out = out.slice(0, at) + out.slice(at + 1 + this.int(8)); break
        case 2: out = out.slice(0, at) + String.fromCharCode(this.int(128)) + out.slice(at + 1); break
        case 3: out = out.slice(0, at); break
        default: out = out.slice(0, at) + out.slice(at, at + this.int(40)) + out.slice(at)
      }
    }
    return out
  }

  scalar (): unknown {
    return this.pick([() => this.text(), () => this.int(1e6), () => '2100000000000000123', () => -1, () => null, () => true, () => 1.5e300, () => ''])()
  }

  fields (depth: number): Record<string, unknown> {
    const names = ['ToUserName', 'FromUserName', 'CreateTime', 'MsgType', 'Event', 'List', 'Encrypt', 'TemplateId', 'MsgID', 'ErrorCode',
      'SubscribeMsgPopupEvent', 'SubscribeMsgSentEvent', '__proto__', 'constructor', 'xml', 'a', this.text(6)]
    const out: Record<string, unknown> = {}
    for (let i = this.int(7); i > 0; i--) {
      const value = depth > 0 && this.chance(0.3) ? (this.chance(0.5) ? this.fields(depth - 1) : [this.fields(depth - 1), this.scalar()]) : this.scalar()
      Object.defineProperty(out, this.pick(names), { value, enumerable: true, configurable: true, writable: true })
    }
    return out
  }

  json (): string { return JSON.stringify(this.chance(0.1) ? [this.fields(2)] : this.fields(3)) }

  xml (depth = 3): string {
    const tag = this.pick(['xml', 'List', 'Encrypt', 'ToUserName', 'CreateTime', 'Event', 'a', '__proto__', 'x:y', '1bad', ''])
    const inner = depth > 0 && this.chance(0.6)
      ? Array.from({ length: 1 + this.int(3) }, () => this.xml(depth - 1)).join('')
      : this.pick([this.text(), `<![CDATA[${this.text()}]]>`, '&amp;&lt;&#x41;&bogus;', '<!-- c -->', '<?pi x?>', ''])
    const attr = this.chance(0.2) ? ` a="${this.text(5)}"` : ''
    return depth === 3 && this.chance(0.7) ? `<xml>${inner}</xml>` : `<${tag}${attr}>${inner}</${this.chance(0.9) ? tag : 'other'}>`
  }

  event (): Record<string, unknown> {
    const kind = this.pick(['subscribe_msg_popup_event', 'subscribe_msg_change_event', 'subscribe_msg_sent_event', 'debug_demo'])
    const n = 1 + this.int(3)
    const List = Array.from({ length: n }, (_, i) => ({
      TemplateId: `Tpl${this.int(1e6)}_${i}`,
      SubscribeStatusString: this.pick(['accept', 'reject']),
      PopupScene: this.pick([0, '0']),
      MsgID: String(2100000000000000000n + BigInt(this.int(1e9))),
      ErrorCode: this.pick([0, '0', '43101']),
      ErrorStatus: this.text(8)
    }))
    return { ToUserName: 'gh_fuzz', FromUserName: `o${this.int(1e9)}`, CreateTime: this.pick([1767225600 + this.int(1e5), '1767225600']), MsgType: 'event', Event: kind, ...(kind === 'debug_demo' ? { debug_str: this.text() } : { List }) }
  }

  query (base: Record<string, string>): Record<string, string | string[]> {
    const q: Record<string, string | string[]> = { ...base }
    for (let i = this.int(3); i > 0; i--) {
      const name = this.pick(['signature', 'timestamp', 'nonce', 'msg_signature', 'encrypt_type', 'echostr', 'openid', this.text(5)])
      q[name] = this.pick([() => this.text(), () => [this.text(), this.text()], () => String(Number(TS) + this.int(1000) - 500), () => ''])() as string
      if (this.chance(0.3)) delete q[name]
    }
    return q
  }
}

type Mode = 'plaintext' | 'compatible' | 'safe'
const CONTENT_TYPES = ['text/xml', 'application/json', 'text/plain', 'application/xml; charset=utf-8', undefined, 'multipart/form-data', 'weird', 'application/json; charset=latin1']

async function fuzzMode (t: Test, mode: Mode, seed: number): Promise<void> {
  const sim = await startSimulator(t)
  const push = mode === 'plaintext' ? { token: TOKEN, mode } : { token: TOKEN, encodingAESKey: KEY, previousEncodingAESKey: OLD_KEY, mode }
  const { app } = await pushApp(t, sim, { push, plugin: { clock: { now: () => NOW } } })
  let handled = 0
  app.wechat.on('event', () => { handled++ })
  app.wechat.on('subscribe_msg_sent_event', () => { throw new Error('handler failure must stay contained') })
  const g = new Gen(seed)
  const key = aesKeyFromEncodingAESKey(KEY)
  const plainSig = (nonce: string): Record<string, string> => ({ signature: pushSignature([TOKEN, TS, nonce]), timestamp: TS, nonce })
  const sealed = (text: string, nonce: string, format: 'xml' | 'json', appId = sim.appId): { query: Record<string, string>, body: string } => {
    const encrypt = encryptMessage(text, { key, appId })
    return { query: { ...plainSig(nonce), encrypt_type: 'aes', msg_signature: pushSignature([TOKEN, TS, nonce, encrypt]) }, body: buildPushBody({ ToUserName: 'gh_fuzz', Encrypt: encrypt }, { format }) }
  }
  const counts = { ok: 0, validOk: 0, rejected: 0 }

  for (let i = 0; i < PER_MODE; i++) {
    const nonce = String(i)
    const format = g.pick(['xml', 'json'] as const)
    let method: 'GET' | 'POST' = 'POST'
    let query: Record<string, string | string[]> = {}
    let body = ''
    let valid = false
    switch (g.int(8)) {
      case 0: // random bytes, random or valid query
        body = g.bytes(600)
        query = g.chance(0.5) ? g.query(plainSig(nonce)) : plainSig(nonce)
        break
      case 1: { // a valid push, sometimes re-sent (duplicates must answer success too)
        const options = { token: TOKEN, mode: mode === 'plaintext' ? 'plaintext' as const : g.pick(['safe', 'compatible'] as const), format, timestamp: NOW / 1000, nonce, ...(mode === 'plaintext' ? {} : { encodingAESKey: g.pick([KEY, OLD_KEY]) }) }
        if (mode === 'safe' && options.mode === 'compatible') options.mode = 'safe'
        const built = buildSimPush(g.event(), options, sim.appId, NOW)
        const [path, search] = built.url.split('?')
        query = Object.fromEntries(new URLSearchParams(search))
        body = built.body
        valid = path === '/wechat/push'
        break
      }
      case 2: { // a valid envelope, mutated after signing
        const built = buildSimPush(g.event(), { token: TOKEN, format, mode: mode === 'plaintext' ? 'plaintext' : 'safe', encodingAESKey: KEY, timestamp: NOW / 1000, nonce }, sim.appId, NOW)
        query = Object.fromEntries(new URLSearchParams(built.url.split('?')[1]))
        body = g.mutate(built.body)
        break
      }
      case 3: { // mutated ciphertext, re-signed so it reaches decryption
        const encrypt = g.mutate(encryptMessage(buildPushBody(g.event(), { format }), { key, appId: sim.appId }), 1 + g.int(2))
        query = { ...plainSig(nonce), encrypt_type: 'aes', msg_signature: pushSignature([TOKEN, TS, nonce, encrypt]) }
        body = buildPushBody({ ToUserName: 'gh', Encrypt: encrypt }, { format })
        break
      }
      case 4: { // random XML / JSON shapes, authenticated, so they reach the parser and normaliser
        const text = g.chance(0.5) ? g.xml() : g.json()
        if (mode === 'plaintext' || g.chance(0.3)) {
          query = plainSig(nonce)
          body = text
        } else {
          ({ query, body } = sealed(text, nonce, format, g.chance(0.1) ? 'wxother' : sim.appId))
        }
        break
      }
      case 5: // random query strings with a valid body
        query = g.query({})
        body = buildPushBody(g.event(), { format })
        break
      case 6: // GET verification with random parameters
        method = 'GET'
        query = g.query(g.chance(0.5) ? { ...plainSig(nonce), echostr: g.text() } : {})
        break
      default: // random fields in a well-formed but arbitrary document
        query = plainSig(nonce)
        body = format === 'json' ? JSON.stringify({ ...g.event(), ...g.fields(2) }) : `<xml>${g.xml(2)}</xml>`
    }
    const contentType = valid ? (format === 'json' ? 'application/json' : 'text/xml') : g.pick(CONTENT_TYPES)
    const res = await app.inject({ method, url: '/wechat/push', query, ...(method === 'POST' ? { body, headers: contentType === undefined ? {} : { 'content-type': contentType } } : {}) })
    if (res.statusCode >= 400 && res.statusCode < 500) {
      counts.rejected++
      if (valid) t.fail(`valid push ${i} refused: ${res.body}`)
    } else if (res.statusCode === 200 && (res.body === 'success' || method === 'GET')) {
      counts.ok++
      if (valid) counts.validOk++
    } else {
      t.fail(`case ${i}: ${res.statusCode} ${res.body.slice(0, 200)}`)
    }
  }
  await settle()
  t.ok(counts.validOk > PER_MODE / 20, `${counts.validOk} valid pushes accepted`)
  t.ok(counts.rejected > PER_MODE / 2, `${counts.rejected} rejected, ${counts.ok} accepted`)
  t.ok(handled > 0 && handled <= counts.ok, `${handled} handled`)
  // Still alive and still correct.
  const last = buildSimPush(new Gen(seed + 1).event(), { token: TOKEN, encodingAESKey: KEY, timestamp: NOW / 1000, mode: mode === 'plaintext' ? 'plaintext' : 'safe' }, sim.appId, NOW)
  t.equal((await app.inject({ method: 'POST', url: last.url, body: last.body, headers: { 'content-type': last.contentType } })).body, 'success')
}

test('fuzz plaintext mode', async (t) => { await fuzzMode(t, 'plaintext', 1) })
test('fuzz compatible mode', async (t) => { await fuzzMode(t, 'compatible', 2) })
test('fuzz safe mode', async (t) => { await fuzzMode(t, 'safe', 3) })
