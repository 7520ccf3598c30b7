import { createCipheriv } from 'node:crypto'
import { test } from 'tap'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { aesKeyFromEncodingAESKey, encryptMessage } from '../lib/push/crypto.js'
import { buildPushBody } from '../lib/push/envelope.js'
import { pushSignature } from '../lib/push/signature.js'
import { buildSimPush } from '../lib/testing/index.js'
import { startSimulator } from './helpers/app.js'
import { collect, KEY, popupEvent, pushApp, sentEvent, settle, TOKEN } from './push-helpers.js'

const NOW = 1767225600_000
const TS = String(NOW / 1000)
const clock = { now: () => NOW }

interface Sent { statusCode: number, code?: string, body: string }

async function post (app: FastifyInstance, query: Record<string, string>, body: string, contentType = 'text/xml'): Promise<Sent> {
  const res = await app.inject({ method: 'POST', url: '/wechat/push', query, headers: { 'content-type': contentType }, body })
  return { statusCode: res.statusCode, body: res.body, code: res.body.startsWith('{') ? JSON.parse(res.body).code : undefined }
}

/** Query of a plaintext-mode push signed with the right token. */
function plainQuery (nonce = 'n0nce'): Record<string, string> {
  return { signature: pushSignature([TOKEN, TS, nonce]), timestamp: TS, nonce }
}

/** Query of a safe-mode push whose msg_signature covers `encrypt` (as someone holding the token would sign it). */
function safeQuery (encrypt: string, nonce = 'n0nce'): Record<string, string> {
  return { signature: pushSignature([TOKEN, TS, nonce]), timestamp: TS, nonce, encrypt_type: 'aes', msg_signature: pushSignature([TOKEN, TS, nonce, encrypt]) }
}

const safeBody = (encrypt: string): string => `<xml><ToUserName><![CDATA[gh_x]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`

function expect4xx (t: Test, res: Sent, status: number, code?: string): void {
  t.equal(res.statusCode, status, `${status} ${code ?? ''}`)
  if (code !== undefined) t.equal(res.code, code)
}

test('replayWindow: 0 turns the POST timestamp range check off (a test WeChat on a frozen clock); dedupe still works', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext', replayWindow: 0 } })
  const all = collect(app)
  const body = buildPushBody(popupEvent(), { format: 'xml' })
  // TS is 2026-01-01 and the app runs on the real clock.
  t.equal((await post(app, plainQuery('a'), body)).body, 'success')
  t.equal((await post(app, plainQuery('b'), body)).body, 'success')
  await settle()
  t.equal(all.length, 1, 'the retry is deduped')
  expect4xx(t, await post(app, { ...plainQuery(), signature: 'f'.repeat(40) }, body), 401, 'FST_WECHAT_PUSH_SIGNATURE')
  expect4xx(t, await post(app, { signature: pushSignature([TOKEN, 'x', 'n']), timestamp: 'x', nonce: 'n' }, body), 401, 'FST_WECHAT_PUSH_TIMESTAMP')
})

test('the replay window is ±5 min in whole seconds, as WeChat stamps pushes: both edges in, one second past either out', async (t) => {
  // The clock half a second into second T: a push stamped T − 300 is as old as one stamped T + 300 is new.
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext' }, plugin: { clock: { now: () => NOW + 500 } } })
  const body = buildPushBody(popupEvent(), { format: 'xml' })
  const at = (offset: number, nonce: string): Record<string, string> => {
    const timestamp = String(NOW / 1000 + offset)
    return { signature: pushSignature([TOKEN, timestamp, nonce]), timestamp, nonce }
  }
  t.equal((await post(app, at(-300, 'a'), body)).body, 'success', 'T − 300 s')
  t.equal((await post(app, at(300, 'b'), body)).body, 'success', 'T + 300 s')
  expect4xx(t, await post(app, at(-301, 'c'), body), 401, 'FST_WECHAT_PUSH_TIMESTAMP')
  expect4xx(t, await post(app, at(301, 'd'), body), 401, 'FST_WECHAT_PUSH_TIMESTAMP')
})

test('plaintext mode: forged, stale, missing, replayed, malformed', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext' }, plugin: { clock } })
  const all = collect(app)
  const body = buildPushBody(popupEvent(), { format: 'xml' })

  expect4xx(t, await post(app, { ...plainQuery(), signature: 'f'.repeat(40) }, body), 401, 'FST_WECHAT_PUSH_SIGNATURE')
  expect4xx(t, await post(app, { ...plainQuery(), signature: pushSignature(['guess', TS, 'n0nce']) }, body), 401, 'FST_WECHAT_PUSH_SIGNATURE')
  const stale = String(NOW / 1000 - 301)
  expect4xx(t, await post(app, { signature: pushSignature([TOKEN, stale, 'n']), timestamp: stale, nonce: 'n' }, body), 401, 'FST_WECHAT_PUSH_TIMESTAMP')
  const future = String(NOW / 1000 + 301)
  expect4xx(t, await post(app, { signature: pushSignature([TOKEN, future, 'n']), timestamp: future, nonce: 'n' }, body), 401, 'FST_WECHAT_PUSH_TIMESTAMP')
  const notNumber = '17672256e3'
  expect4xx(t, await post(app, { signature: pushSignature([TOKEN, notNumber, 'n']), timestamp: notNumber, nonce: 'n' }, body), 401, 'FST_WECHAT_PUSH_TIMESTAMP')
  expect4xx(t, await post(app, {}, body), 401, 'FST_WECHAT_PUSH_SIGNATURE')
  expect4xx(t, await post(app, { signature: plainQuery().signature, timestamp: TS }, body), 401)

  // The same push twice (a WeChat retry, or a replay within the window): both answered, handled once.
  t.equal((await post(app, plainQuery('a'), body)).body, 'success')
  t.equal((await post(app, plainQuery('b'), body)).body, 'success')
  await settle()
  t.equal(all.length, 1, 'handler ran once')

  const bomb = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><xml><FromUserName>&lol2;</FromUserName></xml>'
  expect4xx(t, await post(app, plainQuery(), bomb), 400, 'FST_WECHAT_PUSH_XML')
  const xxe = '<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><ToUserName>&xxe;</ToUserName></xml>'
  expect4xx(t, await post(app, plainQuery(), xxe), 400, 'FST_WECHAT_PUSH_XML')
  // (an empty body is empty, not bad XML; a JSON value other than an object is bad JSON: an audit)
  expect4xx(t, await post(app, plainQuery(), ''), 400, 'FST_WECHAT_PUSH_FORMAT')
  expect4xx(t, await post(app, plainQuery(), '   '), 400, 'FST_WECHAT_PUSH_FORMAT')
  expect4xx(t, await post(app, plainQuery(), 'null', 'application/json'), 400, 'FST_WECHAT_PUSH_JSON')
  expect4xx(t, await post(app, plainQuery(), '"str"', 'application/json'), 400, 'FST_WECHAT_PUSH_JSON')
  expect4xx(t, await post(app, plainQuery(), '[{"ToUserName":"gh"}]', 'application/json'), 400, 'FST_WECHAT_PUSH_JSON')
  expect4xx(t, await post(app, plainQuery(), '{"ToUserName":', 'application/json'), 400, 'FST_WECHAT_PUSH_JSON')
  expect4xx(t, await post(app, plainQuery(), '<xml><ToUserName>gh</ToUserName></xml>'), 400, 'FST_WECHAT_PUSH_FORMAT')
  expect4xx(t, await post(app, plainQuery(), '<html><body/></html>'), 400, 'FST_WECHAT_PUSH_XML')
  expect4xx(t, await post(app, plainQuery(), '<xml><a>unclosed</xml>'), 400, 'FST_WECHAT_PUSH_XML')

  for (const type of ['multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'image/png', 'application/octet-stream']) {
    expect4xx(t, await post(app, plainQuery(), body, type), 415, 'FST_WECHAT_PUSH_MEDIA_TYPE')
  }
  expect4xx(t, await post(app, plainQuery(), body, 'not a media type'), 415)
  const noType = await app.inject({ method: 'POST', url: '/wechat/push', query: plainQuery('c'), body: buildPushBody(sentEvent(), { format: 'xml' }) })
  t.equal(noType.body, 'success', 'no content type: the body decides')
  const textPlain = await post(app, plainQuery('d'), buildPushBody(sentEvent('77'), { format: 'json' }), 'text/plain; charset=utf-8')
  t.equal(textPlain.body, 'success')
})

// The 413 carried Fastify's code (FST_ERR_CTP_BODY_TOO_LARGE) where the README promises the endpoint's own. Failed before.
test('a 10 MB body is refused with 413 (FST_WECHAT_PUSH_TOO_LARGE) before it is read; a body just over the limit too', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext', bodyLimit: 4096 }, plugin: { clock } })
  expect4xx(t, await post(app, plainQuery(), 'x'.repeat(10 * 1024 * 1024)), 413, 'FST_WECHAT_PUSH_TOO_LARGE')
  expect4xx(t, await post(app, plainQuery(), `<xml>${'a'.repeat(4096)}</xml>`), 413)
  // The app's own body limit (1 MiB default) is not what applies here.
  const normal = Buffer.alloc(2 * 1024 * 1024, 'a').toString()
  expect4xx(t, await post(app, plainQuery(), normal), 413)
})

test('the default body limit is 32 KiB: real pushes are under 2 KB', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext' }, plugin: { clock } })
  const padded = (size: number): string => `<xml>${'a'.repeat(size - 11)}</xml>`
  expect4xx(t, await post(app, plainQuery(), padded(32 * 1024 + 1)), 413, 'FST_WECHAT_PUSH_TOO_LARGE')
  expect4xx(t, await post(app, plainQuery(), padded(32 * 1024)), 400, 'FST_WECHAT_PUSH_XML')
})

test('safe mode: tampered ciphertext, wrong appid, bad padding, truncated base64, hostile plaintext', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: TOKEN, encodingAESKey: KEY }, plugin: { clock } })
  const all = collect(app)
  const key = aesKeyFromEncodingAESKey(KEY)
  const valid = buildSimPush(popupEvent(), { token: TOKEN, encodingAESKey: KEY, timestamp: NOW / 1000, nonce: 'n0nce' }, sim.appId, NOW)
  const encrypt = /<Encrypt><!\[CDATA\[([^\]]+)\]\]>/.exec(valid.body)![1]

  // Tampered without the token: the msg_signature no longer matches.
  const flipped = (encrypt[10] === 'A' ? 'B' : 'A')
  const tampered = encrypt.slice(0, 10) + flipped + encrypt.slice(11)
  expect4xx(t, await post(app, safeQuery(encrypt), safeBody(tampered)), 401, 'FST_WECHAT_PUSH_SIGNATURE')
  // Re-signed (an attacker holding the token but not the key): decryption refuses it.
  const bytes = Buffer.from(encrypt, 'base64')
  bytes[bytes.length - 1] ^= 0x55
  const garbled = bytes.toString('base64')
  expect4xx(t, await post(app, safeQuery(garbled), safeBody(garbled)), 400)

  const foreign = encryptMessage(buildPushBody(popupEvent(), { format: 'xml' }), { key, appId: 'wxffffffffffffffff' })
  expect4xx(t, await post(app, safeQuery(foreign), safeBody(foreign)), 400, 'FST_WECHAT_PUSH_APPID')

  const cipher = createCipheriv('aes-256-cbc', key, key.subarray(0, 16)).setAutoPadding(false)
  const badPad = Buffer.concat([cipher.update(Buffer.alloc(64, 0x21)), cipher.final()]).toString('base64')
  expect4xx(t, await post(app, safeQuery(badPad), safeBody(badPad)), 400, 'FST_WECHAT_PUSH_PADDING')

  const truncated = encrypt.slice(0, -3)
  expect4xx(t, await post(app, safeQuery(truncated), safeBody(truncated)), 400, 'FST_WECHAT_PUSH_DECRYPT')
  const notBase64 = '%%%%' + encrypt.slice(4)
  expect4xx(t, await post(app, safeQuery(notBase64), safeBody(notBase64)), 400, 'FST_WECHAT_PUSH_DECRYPT')

  const bomb = encryptMessage('<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]><xml><A>&a;</A></xml>', { key, appId: sim.appId })
  expect4xx(t, await post(app, safeQuery(bomb), safeBody(bomb)), 400, 'FST_WECHAT_PUSH_XML')
  const array = encryptMessage('[]', { key, appId: sim.appId })
  expect4xx(t, await post(app, safeQuery(array), safeBody(array)), 400, 'FST_WECHAT_PUSH_JSON')

  expect4xx(t, await post(app, safeQuery(''), '<xml><ToUserName>gh</ToUserName></xml>'), 400, 'FST_WECHAT_PUSH_FORMAT')
  expect4xx(t, await post(app, safeQuery('1'), '{"Encrypt":1}', 'application/json'), 400, 'FST_WECHAT_PUSH_FORMAT')
  expect4xx(t, await post(app, { ...safeQuery(encrypt), encrypt_type: 'des' }, valid.body), 401, 'FST_WECHAT_PUSH_SIGNATURE')
  expect4xx(t, await post(app, { ...safeQuery(encrypt), msg_signature: '' }, valid.body), 401, 'FST_WECHAT_PUSH_SIGNATURE')
  expect4xx(t, await post(app, safeQuery(encrypt), ''), 400)

  t.equal((await app.inject({ method: 'POST', url: valid.url, headers: { 'content-type': valid.contentType }, body: valid.body })).body, 'success')
  t.equal((await app.inject({ method: 'POST', url: valid.url, headers: { 'content-type': valid.contentType }, body: valid.body })).body, 'success', 'replayed')
  await settle()
  t.equal(all.length, 1, 'replayed push handled once')
})

test('safe and compatible mode: the query is checked before the body is read or parsed', async (t) => {
  const sim = await startSimulator(t)
  for (const mode of ['safe', 'compatible'] as const) {
    const { app } = await pushApp(t, sim, { push: { token: TOKEN, encodingAESKey: KEY, mode, bodyLimit: 4096 }, plugin: { clock } })
    const all = collect(app)
    const junk = '<xml>' + '<a/>'.repeat(900) + '</xml>' // well under the limit, but it would cost a parse
    const valid = buildSimPush(popupEvent(), { token: TOKEN, encodingAESKey: KEY, mode, timestamp: NOW / 1000, nonce: 'n0nce' }, sim.appId, NOW)
    const encrypt = /<Encrypt><!\[CDATA\[([^\]]+)\]\]>/.exec(valid.body)![1]
    const { signature: _signature, ...noPlain } = safeQuery(encrypt)
    // Stranger's requests: a 401 naming the query, not a 400 from the body parser.
    expect4xx(t, await post(app, { ...safeQuery(encrypt), signature: 'f'.repeat(40) }, junk), 401, 'FST_WECHAT_PUSH_SIGNATURE')
    // Without the plain signature these modes are verified by msg_signature alone (§6.3), after the parse.
    expect4xx(t, await post(app, noPlain, junk), 400, 'FST_WECHAT_PUSH_FORMAT')
    expect4xx(t, await post(app, noPlain, 'x'.repeat(64 * 1024)), 413)
    t.equal((await post(app, noPlain, valid.body)).body, 'success', 'a genuine push without the plain signature is taken')
    const stale = String(NOW / 1000 - 3600)
    expect4xx(t, await post(app, { ...safeQuery(encrypt), timestamp: stale, signature: pushSignature([TOKEN, stale, 'n0nce']) }, junk), 401, 'FST_WECHAT_PUSH_TIMESTAMP')
    for (const msgSignature of [undefined, '', 'zz', 'F'.repeat(40), 'a'.repeat(41)]) {
      const { msg_signature: _m, ...rest } = safeQuery(encrypt)
      expect4xx(t, await post(app, msgSignature === undefined ? rest : { ...rest, msg_signature: msgSignature }, junk), 401, 'FST_WECHAT_PUSH_SIGNATURE')
    }
    if (mode === 'safe') expect4xx(t, await post(app, { ...safeQuery(encrypt), encrypt_type: 'raw' }, junk), 401, 'FST_WECHAT_PUSH_SIGNATURE')
    // Refused before the body is read: a body over the limit gets the 401, not a 413.
    expect4xx(t, await post(app, { ...safeQuery(encrypt), signature: 'f'.repeat(40) }, 'x'.repeat(64 * 1024)), 401, 'FST_WECHAT_PUSH_SIGNATURE')
    // A signed query reaches the parser (and the limit) as before.
    expect4xx(t, await post(app, safeQuery(encrypt), junk), 400, 'FST_WECHAT_PUSH_FORMAT')
    expect4xx(t, await post(app, safeQuery(encrypt), 'x'.repeat(64 * 1024)), 413)
    t.equal((await app.inject({ method: 'POST', url: valid.url, headers: { 'content-type': valid.contentType }, body: valid.body })).body, 'success')
    await settle()
    t.equal(all.length, 1)
  }
})

test('methods other than GET and POST are not served; HEAD verification needs a signature', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext' }, plugin: { clock } })
  t.equal((await app.inject({ method: 'PUT', url: '/wechat/push', body: 'x' })).statusCode, 404)
  t.equal((await app.inject({ method: 'HEAD', url: '/wechat/push' })).statusCode, 401)
})

// An audit: a signed customer-service text whose content mentions `<!DOCTYPE html>` (in CDATA, as
// WeChat sends text) was refused 400 as a DTD; WeChat gave up after its retries. Failed before.
test('a signed push whose CDATA text mentions <!DOCTYPE> or <!ENTITY> is content: answered success, handled', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: TOKEN, encodingAESKey: KEY }, plugin: { clock } })
  const all = collect(app)
  const key = aesKeyFromEncodingAESKey(KEY)
  const content = 'how do I write <!DOCTYPE html>? see <!ENTITY foo> and <!doctype html>'
  const text = `<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName><CreateTime>${TS}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content><MsgId>23456789012345678</MsgId></xml>`
  const encrypt = encryptMessage(text, { key, appId: sim.appId })
  const res = await post(app, safeQuery(encrypt), safeBody(encrypt))
  t.equal(res.body, 'success')
  await settle()
  t.equal(all.length, 1, 'the handler got it')
  t.equal(all[0]?.MsgType, 'text')
  t.match(all[0]?.raw, { Content: content })
  // an encrypted JSON value that is not an object is bad JSON, not bad XML
  const nothing = encryptMessage('null', { key, appId: sim.appId })
  expect4xx(t, await post(app, safeQuery(nothing), safeBody(nothing)), 400, 'FST_WECHAT_PUSH_JSON')
})

// An audit: Fastify's "incoming request" line printed the push URL whole; in plaintext mode its
// signature lets whoever reads the log post any body under it within the replay window. Failed before.
test('request log lines show push URLs with their signatures hidden, with Fastify\'s serializer or the app\'s own', async (t) => {
  const sim = await startSimulator(t)
  const appSerializer = { req: (req: { url: string, raw: { url: string }, method: string }) => ({ method: req.method, url: req.url, rawUrl: req.raw.url }) }
  for (const serializers of [undefined, appSerializer]) {
    const { app, logs } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext' }, plugin: { clock }, logLevel: 'info', serializers })
    const query = plainQuery('n1')
    t.equal((await post(app, query, buildPushBody(popupEvent(), { format: 'xml' }))).body, 'success')
    const echo = await app.inject({ method: 'GET', url: '/wechat/push', query: { ...plainQuery('n2'), echostr: 'e1' } })
    t.equal(echo.body, 'e1')
    const refused = await post(app, { ...plainQuery('n3'), msg_signature: 'a'.repeat(40) }, '<xml/>')
    t.equal(refused.statusCode, 400)
    const lines = logs.map((line) => JSON.stringify(line))
    for (const nonce of ['n1', 'n2', 'n3']) t.notOk(lines.some((line) => line.includes(pushSignature([TOKEN, TS, nonce]))), `no line shows ${nonce}'s signature`)
    t.notOk(lines.some((line) => line.includes('a'.repeat(40))), 'nor a msg_signature')
    const incoming = logs.filter((line) => line.msg === 'incoming request').map((line) => line.req as Record<string, string>)
    t.equal(incoming.length, 3)
    for (const req of incoming) {
      t.match(req.url, /^\/wechat\/push\?signature=\[hidden\]&timestamp=\d+&nonce=n\d/, 'the rest of the URL stays')
      if (serializers !== undefined) t.equal(req.rawUrl, req.url, 'the app serializer sees raw.url hidden too')
    }
    t.match(incoming[2]?.url, /msg_signature=\[hidden\]/)
  }
})
