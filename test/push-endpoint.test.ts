import { test } from 'tap'
import Fastify from 'fastify'
import type { InjectOptions } from 'fastify'
import fastifySwagger from '@fastify/swagger'
import wechatPush from '../lib/index.js'
import { aesKeyFromEncodingAESKey, encryptMessage } from '../lib/push/crypto.js'
import { pushSignature } from '../lib/push/signature.js'
import type { PopupEvent, SentEvent } from '../lib/public-types.js'
import { buildSimPush } from '../lib/testing/index.js'
import { startSimulator } from './helpers/app.js'
import { changeEvent, collect, KEY, type LogLine, OLD_KEY, OPENID, OTHER_KEY, popupEvent, pushApp, sentEvent, TOKEN, TPL_A, TPL_B, waitFor } from './push-helpers.js'

// WECHAT.md §6.2 worked example.
const VECTOR = { token: 'AAAAA', timestamp: '1714036504', nonce: '1514711492', signature: 'f464b24fc39322e44b38aa78f5edd27bd1441696' }
const vectorClock = { now: () => 1714036504000 }

test('GET: the documented vector echoes the raw echostr; wrong → 401', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: VECTOR.token }, plugin: { clock: vectorClock } })
  const query = `timestamp=${VECTOR.timestamp}&nonce=${VECTOR.nonce}`
  const ok = await app.inject(`/wechat/push?signature=${VECTOR.signature}&${query}&echostr=7209164311839582153`)
  t.equal(ok.statusCode, 200)
  t.equal(ok.body, '7209164311839582153', 'raw echostr, not JSON')
  t.match(ok.headers['content-type'], /^text\/plain/)
  t.equal(ok.headers['x-content-type-options'], 'nosniff')

  const wrong = await app.inject(`/wechat/push?signature=${'0'.repeat(40)}&${query}&echostr=x`)
  t.equal(wrong.statusCode, 401)
  t.same(wrong.json(), { statusCode: 401, code: 'FST_WECHAT_PUSH_SIGNATURE', error: 'Unauthorized', message: 'push signature does not match' })
  t.notMatch(wrong.body, /AAAAA/, 'no secret in the answer')

  const noEcho = await app.inject(`/wechat/push?signature=${VECTOR.signature}&${query}`)
  t.equal(noEcho.statusCode, 400)
  t.equal(noEcho.json().code, 'FST_WECHAT_PUSH_FORMAT')
  t.equal((await app.inject('/wechat/push')).statusCode, 401, 'no query at all')
  const repeated = await app.inject(`/wechat/push?signature=${VECTOR.signature}&signature=${VECTOR.signature}&${query}&echostr=x`)
  t.equal(repeated.statusCode, 401, 'a repeated parameter does not count')
})

test('GET: the documented vector works on a real clock: the check is not replay-windowed (§6.2)', async (t) => {
  const sim = await startSimulator(t)
  // No clock option: the vector's timestamp (2024) is far outside any replay window of today.
  const { app } = await pushApp(t, sim, { push: { token: VECTOR.token, replayWindow: 60 } })
  const res = await app.inject(`/wechat/push?signature=${VECTOR.signature}&timestamp=${VECTOR.timestamp}&nonce=${VECTOR.nonce}&echostr=x`)
  t.equal(res.statusCode, 200)
  t.equal(res.body, 'x')
  const { app: safe } = await pushApp(t, sim, { push: { token: VECTOR.token, encodingAESKey: KEY } })
  t.equal((await safe.inject(`/wechat/push?signature=${VECTOR.signature}&timestamp=${VECTOR.timestamp}&nonce=${VECTOR.nonce}&echostr=y`)).body, 'y', 'safe mode too')
  const forged = await app.inject(`/wechat/push?signature=${VECTOR.signature}&timestamp=1714036505&nonce=${VECTOR.nonce}&echostr=x`)
  t.equal(forged.statusCode, 401, 'the timestamp is still covered by the signature')
})

test('GET in safe mode: the plain check still works (§6.2); the WeCom msg_signature form is refused', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: VECTOR.token, encodingAESKey: KEY }, plugin: { clock: vectorClock } })
  const base = `timestamp=${VECTOR.timestamp}&nonce=${VECTOR.nonce}`
  const plain = await app.inject(`/wechat/push?signature=${VECTOR.signature}&${base}&echostr=hello`)
  t.equal(plain.body, 'hello')

  // A captured safe-mode push is already signed with msg_signature over its Encrypt field: replayed as
  // a GET, the WeCom form would decrypt it for whoever replays it (a decryption oracle).
  const secret = '<xml><FromUserName><![CDATA[oSecretOpenid]]></FromUserName></xml>'
  const echostr = encryptMessage(secret, { key: aesKeyFromEncodingAESKey(KEY), appId: sim.appId })
  const msgSignature = pushSignature([VECTOR.token, VECTOR.timestamp, VECTOR.nonce, echostr])
  const wecom = await app.inject({ url: '/wechat/push', query: { msg_signature: msgSignature, timestamp: VECTOR.timestamp, nonce: VECTOR.nonce, echostr } })
  t.equal(wecom.statusCode, 401)
  t.equal(wecom.json().code, 'FST_WECHAT_PUSH_SIGNATURE')
  t.notMatch(wecom.body, /oSecretOpenid/, 'nothing decrypted')
  const withEncrypt = await app.inject({ url: '/wechat/push', query: { msg_signature: msgSignature, encrypt_type: 'aes', signature: '0'.repeat(40), timestamp: VECTOR.timestamp, nonce: VECTOR.nonce, echostr } })
  t.equal(withEncrypt.statusCode, 401, 'a wrong plain signature next to a valid msg_signature')
  // A valid plain signature echoes the echostr as it came: ciphertext stays ciphertext.
  const both = await app.inject({ url: '/wechat/push', query: { signature: VECTOR.signature, msg_signature: msgSignature, timestamp: VECTOR.timestamp, nonce: VECTOR.nonce, echostr } })
  t.equal(both.statusCode, 200)
  t.equal(both.body, echostr, 'echoed raw, not decrypted')
})

for (const mode of ['plaintext', 'compatible', 'safe'] as const) {
  for (const format of ['xml', 'json'] as const) {
    test(`${mode} mode, ${format}: handlers receive normalised events`, async (t) => {
      const sim = await startSimulator(t)
      const push = mode === 'plaintext' ? { token: TOKEN, mode } : { token: TOKEN, encodingAESKey: KEY, mode }
      const { app, url } = await pushApp(t, sim, { push, listen: true })
      const all = collect(app)
      const popups: PopupEvent[] = []
      const sent: SentEvent[] = []
      app.wechat.on('subscribe_msg_popup_event', (event) => { popups.push(event) })
      app.wechat.on('subscribe_msg_sent_event', (event) => { sent.push(event) })
      const options = { token: TOKEN, mode, format, ...(mode === 'plaintext' ? {} : { encodingAESKey: KEY }) }

      for (const event of [popupEvent(), sentEvent(), changeEvent()]) {
        const res = await sim.push(url, event, options)
        t.same(res, { statusCode: 200, body: 'success' })
      }
      await waitFor(() => all.length === 3)
      t.equal(popups.length, 1)
      t.equal(sent.length, 1)
      t.same(popups[0].List, [
        { TemplateId: TPL_A, SubscribeStatusString: 'accept', PopupScene: 0 },
        { TemplateId: TPL_B, SubscribeStatusString: 'reject', PopupScene: 0 }
      ], 'List as an array, PopupScene coerced')
      t.equal(popups[0].CreateTime, 1767225600)
      t.equal(popups[0].FromUserName, OPENID)
      t.same(sent[0].List, [{ TemplateId: TPL_A, MsgID: '2100000000000000123', ErrorCode: 0, ErrorStatus: 'success' }], 'MsgID keeps every digit')
      t.equal(sent[0].CreateTime, 1767232800, 'string CreateTime coerced')
      t.same(all.map((e) => e.Event), ['subscribe_msg_popup_event', 'subscribe_msg_sent_event', 'subscribe_msg_change_event'])
      if (format === 'json') t.equal(all[1].raw.List && typeof all[1].raw.List, 'object', 'one JSON item arrives as an object and is normalised')
    })
  }
}

test('a bare 64-bit MsgID number in JSON keeps every digit', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext' } })
  const sent: SentEvent[] = []
  app.wechat.on('subscribe_msg_sent_event', (e) => { sent.push(e) })
  const ts = String(Math.floor(Date.now() / 1000))
  const body = '{"ToUserName":"gh_x","FromUserName":"oU","CreateTime":1767232800,"MsgType":"event","Event":"subscribe_msg_sent_event",' +
    '"List":[{"TemplateId":"T1","MsgID":2100000000000000123,"ErrorCode":0,"ErrorStatus":"success"},{"TemplateId":"T2","MsgID":"7","ErrorCode":"43101","ErrorStatus":"fail"}]}'
  const res = await app.inject({ method: 'POST', url: '/wechat/push', query: { signature: pushSignature([TOKEN, ts, 'n1']), timestamp: ts, nonce: 'n1' }, headers: { 'content-type': 'application/json' }, body })
  t.equal(res.body, 'success')
  await waitFor(() => sent.length === 1)
  t.same(sent[0].List.map((i) => [i.MsgID, i.ErrorCode]), [['2100000000000000123', 0], ['7', 43101]])
})

test('a UTF-8 BOM before a JSON body is accepted, in plaintext and inside the ciphertext; an event without items is a 400', async (t) => {
  const sim = await startSimulator(t)
  const plain = await pushApp(t, sim, { push: { token: TOKEN, mode: 'plaintext' } })
  const seen = collect(plain.app)
  const ts = String(Math.floor(Date.now() / 1000))
  const query = { signature: pushSignature([TOKEN, ts, 'n1']), timestamp: ts, nonce: 'n1' }
  const post = async (body: string): Promise<{ statusCode: number, body: string }> => {
    const res = await plain.app.inject({ method: 'POST', url: '/wechat/push', query, headers: { 'content-type': 'application/json' }, body })
    return { statusCode: res.statusCode, body: res.body }
  }
  t.same(await post('\uFEFF' + JSON.stringify(popupEvent())), { statusCode: 200, body: 'success' })
  for (const List of [undefined, []]) {
    const res = await post(JSON.stringify({ ...changeEvent(), List }))
    t.equal(res.statusCode, 400, `List ${JSON.stringify(List)}`)
    t.equal(JSON.parse(res.body).message, 'push body has an unexpected format: List must have at least one item')
  }
  await waitFor(() => seen.length === 1)
  t.equal(seen[0].List?.length, 2)

  const safe = await pushApp(t, sim, { push: { token: TOKEN, encodingAESKey: KEY } })
  const inner = collect(safe.app)
  const encrypt = encryptMessage('\uFEFF' + JSON.stringify(sentEvent()), { key: aesKeyFromEncodingAESKey(KEY), appId: sim.appId })
  const res = await safe.app.inject({
    method: 'POST',
    url: '/wechat/push',
    query: { ...query, encrypt_type: 'aes', msg_signature: pushSignature([TOKEN, ts, 'n1', encrypt]) },
    headers: { 'content-type': 'application/json' },
    body: '\uFEFF' + JSON.stringify({ ToUserName: 'gh_x', Encrypt: encrypt })
  })
  t.same({ statusCode: res.statusCode, body: res.body }, { statusCode: 200, body: 'success' })
  await waitFor(() => inner.length === 1)
})

test('key rotation: a push under the previous EncodingAESKey is accepted; an unknown key is not', async (t) => {
  const sim = await startSimulator(t)
  const { app, url } = await pushApp(t, sim, { push: { token: TOKEN, encodingAESKey: KEY, previousEncodingAESKey: OLD_KEY }, listen: true })
  const all = collect(app)
  for (const format of ['xml', 'json'] as const) {
    t.same(await sim.push(url, sentEvent(String(format.length)), { token: TOKEN, encodingAESKey: OLD_KEY, format }), { statusCode: 200, body: 'success' })
    const other = await sim.push(url, sentEvent('9'), { token: TOKEN, encodingAESKey: OTHER_KEY, format })
    t.equal(other.statusCode, 400)
    t.match(JSON.parse(other.body).code, /^FST_WECHAT_PUSH_(PADDING|DECRYPT|APPID)$/)
  }
  await waitFor(() => all.length === 2)
})

test('compatible mode needs Encrypt and its msg_signature; safe mode refuses plaintext pushes', async (t) => {
  const sim = await startSimulator(t)
  const compatible = await pushApp(t, sim, { push: { token: TOKEN, encodingAESKey: KEY, mode: 'compatible' }, listen: true })
  const all = collect(compatible.app)
  t.same(await sim.push(compatible.url, changeEvent(), { token: TOKEN, encodingAESKey: KEY, mode: 'compatible' }), { statusCode: 200, body: 'success' })
  t.same(await sim.push(compatible.url, sentEvent(), { token: TOKEN, encodingAESKey: KEY, mode: 'safe' }), { statusCode: 200, body: 'success' }, 'ciphertext only is fine')
  t.equal((await sim.push(compatible.url, sentEvent(), { token: 'wrongToken', encodingAESKey: KEY, mode: 'compatible' })).statusCode, 401)
  // A body without Encrypt, signed only by the plain signature (which covers no body): what anyone
  // could send with the query of one logged push URL.
  const plain = await sim.push(compatible.url, popupEvent('oForgedOpenid'), { token: TOKEN, mode: 'plaintext' })
  t.equal(plain.statusCode, 401, 'no msg_signature')
  t.equal(JSON.parse(plain.body).code, 'FST_WECHAT_PUSH_SIGNATURE')
  await waitFor(() => all.length === 2)
  t.same(await compatible.app.wechat.credits('oForgedOpenid'), {}, 'no credit granted')
  // The plaintext copy next to Encrypt is ignored: only the signed ciphertext counts.
  const built = buildSimPush({ ...changeEvent(), CreateTime: 1767229300 }, { token: TOKEN, encodingAESKey: KEY, mode: 'compatible', format: 'json' }, sim.appId, Date.now())
  const tampered = built.body.replace('"subscribe_msg_change_event"', '"subscribe_msg_popup_event"')
  t.not(tampered, built.body)
  t.equal((await compatible.app.inject({ method: 'POST', url: built.url, body: tampered, headers: { 'content-type': built.contentType } })).body, 'success')
  await waitFor(() => all.length === 3)
  t.equal(all[2].Event, 'subscribe_msg_change_event', 'the decrypted message, not the plaintext copy')

  for (const push of [{ token: TOKEN, encodingAESKey: KEY }, { token: TOKEN, encodingAESKey: KEY, mode: 'safe' }]) {
    const safe = await pushApp(t, sim, { push, listen: true })
    const res = await sim.push(safe.url, changeEvent(), { token: TOKEN, mode: 'plaintext' })
    t.equal(res.statusCode, 401, 'plaintext push in safe mode (also the default with a key)')
    t.equal(JSON.parse(res.body).message, 'push signature does not match: safe mode needs encrypt_type=aes')
    const compat = await sim.push(safe.url, changeEvent(), { token: TOKEN, encodingAESKey: KEY, mode: 'compatible' })
    t.same(compat, { statusCode: 200, body: 'success' }, 'safe mode accepts what WeChat sends in compatible mode')
  }
})

test('custom path, and the user\'s own JSON parser is untouched', async (t) => {
  const sim = await startSimulator(t)
  const { app, url } = await pushApp(t, sim, {
    push: { token: TOKEN, encodingAESKey: KEY, path: '/hooks/wx' },
    listen: true,
    setup: (instance) => {
      instance.post('/orders', async (request) => ({ type: typeof request.body, body: request.body }))
    }
  })
  const all = collect(app)
  t.same(await sim.push(url, popupEvent(), { token: TOKEN, encodingAESKey: KEY, format: 'json', path: '/hooks/wx' }), { statusCode: 200, body: 'success' })
  await waitFor(() => all.length === 1)
  const order = await app.inject({ method: 'POST', url: '/orders', payload: { id: 42, items: ['mug'] } })
  t.same(order.json(), { type: 'object', body: { id: 42, items: ['mug'] } }, 'JSON parsed into an object as usual')
  const form = await app.inject({ method: 'POST', url: '/orders', headers: { 'content-type': 'text/xml' }, body: '<xml/>' })
  t.equal(form.statusCode, 415, 'the push parser did not leak to the app')
  t.equal((await app.inject({ method: 'POST', url: '/wechat/push', body: '' })).statusCode, 404, 'default path not served')
})

test('the endpoint answers success before a slow handler finishes', async (t) => {
  const sim = await startSimulator(t)
  const { app, url } = await pushApp(t, sim, { listen: true })
  let finished = 0
  app.wechat.on('subscribe_msg_popup_event', async () => {
    await new Promise((resolve) => setTimeout(resolve, 2000))
    finished = Date.now()
  })
  const started = Date.now()
  const res = await sim.push(url, popupEvent(), { token: TOKEN, encodingAESKey: KEY })
  const answered = Date.now()
  t.same(res, { statusCode: 200, body: 'success' })
  t.ok(answered - started < 1900, `answered in ${answered - started} ms, before the 2 s handler ended`)
  t.equal(finished, 0, 'handler still running')
  await waitFor(() => finished > 0, 10_000)
  t.ok(finished - started >= 1900)
})

test('without push configured: on() works but nothing is served or fired', async (t) => {
  const sim = await startSimulator(t)
  const { app } = await pushApp(t, sim, { push: false })
  const all = collect(app)
  t.throws(() => app.wechat.on('', () => {}), TypeError)
  t.throws(() => app.wechat.on('event', 'nope' as never), TypeError)
  t.equal((await app.inject({ method: 'POST', url: '/wechat/push', body: '<xml/>' })).statusCode, 404)
  t.equal(all.length, 0)
})

// WeChat applies a console mode change at once (WECHAT.md §6.1: deploy code for the new mode first).
// The README's path from plaintext to safe and back, plugin first each time, never refuses a push.
test('changing the push mode through compatible mode, the plugin first each time, loses no push', async (t) => {
  const sim = await startSimulator(t)
  const plaintextWithKey = await pushApp(t, sim, { push: { token: TOKEN, encodingAESKey: KEY, mode: 'plaintext' }, listen: true })
  const safe = await pushApp(t, sim, { push: { token: TOKEN, encodingAESKey: KEY, mode: 'safe' }, listen: true })
  const steps = [
    // [the plugin's configuration, what WeChat sends (the console's mode)]
    [plaintextWithKey, 'plaintext'], // 1. deploy with the key, still mode 'plaintext'
    [plaintextWithKey, 'compatible'], // 2. console → compatible
    [safe, 'compatible'], // 3. deploy mode 'safe'
    [safe, 'safe'], // 4. console → safe (and back: the same steps reversed)
    [safe, 'compatible'],
    [plaintextWithKey, 'compatible'],
    [plaintextWithKey, 'plaintext']
  ] as const
  for (const [i, [plugin, mode]] of steps.entries()) {
    const res = await sim.push(plugin.url, changeEvent(), { token: TOKEN, encodingAESKey: KEY, mode })
    t.same(res, { statusCode: 200, body: 'success' }, `step ${i + 1}: console ${mode}, plugin ${plugin === safe ? 'safe' : 'plaintext with the key'}`)
  }
})

// Refusals were logged through the plugin's logger at warn: no reqId, so a line could not be matched
// to Fastify's request lines, and louder than Fastify's own info for a client 4xx. Failed before.
test('refusals are logged at info on request.log: the reqId of the request, the plugin\'s bindings', async (t) => {
  const sim = await startSimulator(t)
  const { app, logs } = await pushApp(t, sim, { push: { token: VECTOR.token, bodyLimit: 1024 }, plugin: { clock: vectorClock, namespace: 'shop' }, logLevel: 'info' })
  const query = `signature=${VECTOR.signature}&timestamp=${VECTOR.timestamp}&nonce=${VECTOR.nonce}`
  const cases: Array<[string, InjectOptions | string, number, string]> = [
    ['a GET with a wrong signature', `/wechat/push?signature=${'0'.repeat(40)}&timestamp=${VECTOR.timestamp}&nonce=${VECTOR.nonce}&echostr=x`, 401, 'wechat: push rejected'],
    ['a forged POST', { method: 'POST', url: `/wechat/push?signature=${'f'.repeat(40)}&timestamp=${VECTOR.timestamp}&nonce=${VECTOR.nonce}`, headers: { 'content-type': 'text/xml' }, body: '<xml/>' }, 401, 'wechat: push rejected'],
    ['a scanner\'s bare POST', { method: 'POST', url: '/wechat/push', body: 'hello' }, 401, 'wechat: push rejected'],
    ['a signed POST with a form body', { method: 'POST', url: `/wechat/push?${query}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1' }, 415, 'wechat: push request refused'],
    ['a body over the limit (Fastify\'s own 413)', { method: 'POST', url: `/wechat/push?${query}`, headers: { 'content-type': 'text/xml' }, body: 'x'.repeat(2048) }, 413, 'wechat: push request refused']
  ]
  for (const [what, request, status, msg] of cases) {
    const from = logs.length
    t.equal((await app.inject(request)).statusCode, status, what)
    const lines: LogLine[] = logs.slice(from)
    const completed = lines.find((line) => line.msg === 'request completed')
    const refusal = lines.find((line) => line.msg === msg)
    t.ok(completed?.reqId, `${what}: Fastify's request line has a reqId`)
    t.match(refusal, { level: 30, reqId: completed?.reqId, plugin: 'fastify-wechat-push', appId: sim.appId, namespace: 'shop', statusCode: status }, `${what}: info, same reqId, plugin bindings`)
    t.equal(lines.filter((line) => line.msg === msg).length, 1, `${what}: one line`)
  }
  t.same(logs.filter((line) => line.level >= 40), [], 'nothing at warn or above')
})

// The push routes had no schema: @fastify/swagger listed GET and POST /wechat/push with nothing in
// them, in the app's own API spec. They are hidden now. Failed before.
test('@fastify/swagger leaves the push endpoint out of the spec; the endpoint still answers', async (t) => {
  const sim = await startSimulator(t)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySwagger, { openapi: { info: { title: 'test', version: '1.0.0' } } })
  await app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, clock: vectorClock, push: { token: VECTOR.token } })
  app.get('/orders', async () => [])
  await app.ready()
  const spec = app.swagger() as { paths: Record<string, unknown> }
  t.same(Object.keys(spec.paths), ['/orders'])
  const echo = await app.inject(`/wechat/push?signature=${VECTOR.signature}&timestamp=${VECTOR.timestamp}&nonce=${VECTOR.nonce}&echostr=ok`)
  t.equal(echo.body, 'ok')
})

// A push signed with our Token that does not decrypt comes from WeChat: our EncodingAESKey (or AppID)
// is not the console's, and every push fails until it is fixed. At info (as a stranger's refusal) an
// app logging at warn never saw it. Failed before.
test('a push signed with our Token that does not decrypt is a warning naming the key to check', async (t) => {
  const sim = await startSimulator(t)
  const { url, logs } = await pushApp(t, sim, { push: { token: TOKEN, encodingAESKey: KEY }, listen: true, logLevel: 'info' })
  const res = await sim.push(url, sentEvent('1'), { token: TOKEN, encodingAESKey: OTHER_KEY, mode: 'safe' })
  t.equal(res.statusCode, 400)
  const line = logs.find((l) => /push rejected/.test(String(l.msg)))
  t.match(line, { level: 40, msg: /encodingAESKey/ }, 'warn, with what to check')
  t.notMatch(JSON.stringify(logs), new RegExp(`${KEY}|${OTHER_KEY}`), 'no key in the log')
  const forged = await sim.push(url, sentEvent('2'), { token: 'wrongToken', encodingAESKey: KEY, mode: 'safe' })
  t.equal(forged.statusCode, 401)
  const rejected = logs.filter((l) => /push rejected/.test(String(l.msg)))
  t.ok(rejected.some((l) => l.reason === 'signature'), 'the forged push was logged')
  t.same(rejected.filter((l) => l.reason === 'signature').map((l) => l.level), rejected.filter((l) => l.reason === 'signature').map(() => 30), 'a wrong signature (anyone) stays at info (each of WeChat\'s tries)')
})
