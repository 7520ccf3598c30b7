import { test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildSimUrlCheck } from '../lib/testing/index.js'
import { startSimulator } from './helpers/app.js'
import type { Teardown } from './helpers/app.js'
import { KEY, pushApp, TOKEN } from './push-helpers.js'

// The simulator had no URL check (WECHAT.md §6.2: the GET WeChat sends when the push URL is saved in
// the console), so users could not test that their deployment passes it.

test('buildSimUrlCheck signs as WECHAT.md §6.2\'s worked example', async (t) => {
  const check = buildSimUrlCheck({ token: 'AAAAA', timestamp: 1714036504, nonce: '1514711492', echostr: 'hello' }, 0)
  const url = new URL(check.url, 'http://x')
  t.equal(url.pathname, '/wechat/push')
  t.equal(url.searchParams.get('signature'), 'f464b24fc39322e44b38aa78f5edd27bd1441696')
  t.equal(url.searchParams.get('echostr'), 'hello')
  t.equal(check.echostr, 'hello')
  const random = buildSimUrlCheck({ token: 'AAAAA', path: '/hooks/wx' }, Date.UTC(2026, 0, 1))
  t.match(random.echostr, /^[1-9][0-9]{18}$/, 'a long number by default')
  t.equal(new URL(random.url, 'http://x').searchParams.get('timestamp'), String(Date.UTC(2026, 0, 1) / 1000), 'the clock\'s second')
  t.match(random.url, /^\/hooks\/wx\?/)
  for (const [options, message] of [
    [{}, /token is required/],
    [{ token: '' }, /token is required/],
    [{ token: 'A', path: 'push' }, /path must be a string starting with \//],
    [{ token: 'A', timestamp: 1.5 }, /timestamp must be an integer/],
    [{ token: 'A', echostr: '' }, /echostr must be a non-empty string/],
    [{ token: 'A', echostr: 5 }, /echostr must be a non-empty string/],
    [{ token: 'A', tokn: 'A' }, /unknown option "tokn"/],
    [null, /options must be an object/]
  ] as const) {
    t.throws(() => buildSimUrlCheck(options as never, 0), { name: 'TypeError', message }, JSON.stringify(options))
  }
})

test('sim.checkPushUrl: the plugin\'s push endpoint passes in every mode; a wrong Token fails the check', async (t) => {
  const sim = await startSimulator(t)
  for (const push of [{ token: TOKEN }, { token: TOKEN, encodingAESKey: KEY, mode: 'compatible' }, { token: TOKEN, encodingAESKey: KEY }]) {
    const { url } = await pushApp(t, sim, { listen: true, push })
    sim.pushConfig({ url, token: TOKEN, ...(push.encodingAESKey === undefined ? {} : { encodingAESKey: KEY }) })
    const result = await sim.checkPushUrl()
    t.ok(result.ok, `passes (${push.mode ?? (push.encodingAESKey ? 'safe' : 'plaintext')})`)
    t.equal(result.statusCode, 200)
    t.equal(result.body, result.echostr, 'the raw echostr, nothing around it')
    const wrong = await sim.checkPushUrl(undefined, { token: 'notTheToken' })
    t.notOk(wrong.ok, 'another Token: the check fails')
    t.ok(wrong.statusCode >= 400 && wrong.statusCode < 500, `a 4xx (${wrong.statusCode})`)
    t.not(wrong.body, wrong.echostr)
  }
  t.equal(sim.pushes.length, 0, 'a URL check is not a push')
})

/** An app that answers every GET with `reply`. */
async function answeringApp (t: Teardown, status: number, reply: (echostr: string) => string, delayMs = 0): Promise<string> {
  const server = createServer((request, response) => {
    const echostr = new URL(request.url ?? '/', 'http://x').searchParams.get('echostr') ?? ''
    setTimeout(() => { response.writeHead(status, { 'content-type': 'text/plain' }); response.end(reply(echostr)) }, delayMs).unref()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

test('sim.checkPushUrl fails what the console would not save: a JSON-quoted echo, an error status, no answer', async (t) => {
  const sim = await startSimulator(t, { pushTimeoutMs: 300 })
  t.ok((await sim.checkPushUrl(await answeringApp(t, 200, (e) => e), { token: TOKEN })).ok, 'the raw echo passes')
  t.notOk((await sim.checkPushUrl(await answeringApp(t, 200, (e) => JSON.stringify(e)), { token: TOKEN })).ok, 'a JSON string is not the raw echostr')
  t.notOk((await sim.checkPushUrl(await answeringApp(t, 500, (e) => e), { token: TOKEN })).ok, 'an error status fails even with the echo')
  const late = await sim.checkPushUrl(await answeringApp(t, 200, (e) => e, 2000), { token: TOKEN })
  t.same({ ok: late.ok, statusCode: late.statusCode }, { ok: false, statusCode: 0 }, 'no answer within the timeout')
  await t.rejects(sim.checkPushUrl(undefined, { token: TOKEN }), { name: 'TypeError', message: /no app URL/ })
  await t.rejects(sim.checkPushUrl(5 as never, { token: TOKEN }), { name: 'TypeError', message: /appUrl must be a string/ })
  await t.rejects(sim.checkPushUrl('http://127.0.0.1:1'), { name: 'TypeError', message: /token is required/ })
})
