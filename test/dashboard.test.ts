import { test } from 'tap'
import type { Test } from 'tap'
import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'
import type { FastifyInstance } from 'fastify'
import { shippedMessage, startSimulator } from './helpers/app.js'
import { AUTH, call, routesApp, TOKEN } from './routes-helpers.js'

/** Debian's `chromium` package (CI installs it). Missing is a failure, never a skip. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const HOSTILE_ERRMSG = '</script><img src=x onerror="document.title=\'pwned\'"> & "quotes"'
const HOSTILE_TEMPLATE = '<svg/onload=document.title=1>'

async function launch (t: Test): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium) or set CHROMIUM_PATH`)
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
  t.teardown(() => browser.close())
  return browser
}

/** Sent, failed (one with markup in its errmsg, one with markup in its templateId) and pending messages. */
async function produceTraffic (app: FastifyInstance, sim: Awaited<ReturnType<typeof startSimulator>>): Promise<void> {
  await app.wechat.send(shippedMessage())
  await app.wechat.send(shippedMessage())
  sim.failNext('send', { errcode: 40003, errmsg: HOSTILE_ERRMSG })
  await app.wechat.send(shippedMessage()).catch(() => {})
  await app.wechat.send({ ...shippedMessage(), templateId: HOSTILE_TEMPLATE }).catch(() => {})
  await app.wechat.enqueue([shippedMessage(), shippedMessage(), shippedMessage()], { delay: 60_000 })
}

/**
 * Resolves once the page has rendered at least once. (It waited for data-renders="1" exactly: with
 * refresh=1 a slow Chromium rendered the second time, a second later, before the wait began, and the
 * wait ran out: a CI run.)
 */
async function rendered (page: Page): Promise<void> {
  await page.waitForFunction(() => Number((globalThis as unknown as { document: { body: { dataset: { renders?: string } } } }).document.body.dataset.renders) >= 1)
}

async function sliceCounts (page: Page): Promise<Record<string, number>> {
  return page.$$eval('#pie [data-status]', (nodes) => Object.fromEntries(nodes.map((n) => [n.getAttribute('data-status'), Number(n.getAttribute('data-count'))])))
}

async function expectedCounts (app: FastifyInstance): Promise<Record<string, number>> {
  const s = await app.wechat.stats()
  return { pending: s.pending + s.sending, sent: s.sent, delivered: s.delivered, failed: s.failed, unknown: s.unknown }
}

test('the page, in a real Chromium: slices match stats(), markup stays text, it refreshes with the token, nothing leaves 127.0.0.1', async (t) => {
  const sim = await startSimulator(t)
  // validation 'off' lets the hostile templateId reach WeChat and come back as a recorded failure.
  const app = await routesApp(t, sim, { plugin: { validation: 'off' } })
  await produceTraffic(app, sim)
  const origin = await app.listen({ host: '127.0.0.1', port: 0 })
  const served: string[] = []
  app.server.on('request', (request) => { served.push(String(request.url)) })
  const browser = await launch(t)
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  const requests: { url: string, authorization?: string }[] = []
  const problems: string[] = []
  page.on('request', (request) => { requests.push({ url: request.url(), authorization: request.headers().authorization }) })
  page.on('console', (message) => { if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text()) })
  page.on('pageerror', (error) => { problems.push(error.message) })
  page.on('dialog', (dialog) => { problems.push(`dialog: ${dialog.message()}`); dialog.dismiss().catch(() => {}) })

  const response = await page.goto(`${origin}/wechat/dashboard?token=${TOKEN}&refresh=1`)
  t.equal(response?.status(), 200)
  await rendered(page)
  t.same(await sliceCounts(page), await expectedCounts(app), 'slices equal app.wechat.stats()')
  t.match(await sliceCounts(page), { pending: 3, sent: 2, failed: 2 })
  t.equal(await page.textContent('#total'), '7')

  const templateCells = await page.$$eval('#templates tr td:first-child', (cells) => cells.map((c) => c.textContent))
  t.same(templateCells.sort(), [HOSTILE_TEMPLATE, shippedMessage().templateId].sort(), 'one row per template, the markup shown as text')
  const failures = await page.$$eval('#failures tr', (rows) => rows.map((r) => [...r.children].map((c) => c.textContent)))
  t.equal(failures.length, 2)
  t.ok(failures.some((cells) => cells[2] === '40003' && cells[3] === HOSTILE_ERRMSG), 'the errmsg, verbatim and inert')
  t.equal(await page.$$eval('img, #failures svg, #templates svg', (nodes) => nodes.length), 0, 'no element was injected')
  t.not(await page.title(), 'pwned')

  // New traffic, then the page's own refresh (every second here) picks it up.
  await app.wechat.send(shippedMessage())
  // A render under way may have read /stats before the send (Chromium shares the 2 cores and renders
  // may have gone by meanwhile): wait for the second render from now, which began after it.
  const rendersAtSend = Number(await page.getAttribute('body', 'data-renders'))
  await page.waitForFunction((n) => Number((globalThis as unknown as { document: { body: { dataset: { renders?: string } } } }).document.body.dataset.renders) >= n + 2, rendersAtSend, { timeout: 10_000 })
  t.same(await sliceCounts(page), await expectedCounts(app), 'refreshed from /stats')
  t.match(await page.textContent('#state'), /^updated /)
  const refreshes = requests.filter((r) => r.url === `${origin}/wechat/stats`)
  t.ok(refreshes.length >= 2, 'the page polled /stats')
  t.ok(refreshes.every((r) => r.authorization === AUTH), 'with the token it was opened with, as a Bearer header')
  for (const { url } of requests) t.ok(url.startsWith(`${origin}/`), `stays on 127.0.0.1: ${url}`)
  // Chromium asks for /favicon.ico on its own (the app's 404); the CSP allows no data: icon to stop it.
  t.same(served.filter((url) => !url.startsWith('/wechat/')), ['/favicon.ico'], 'the server saw only our routes and the favicon')
  t.same(problems.filter((text) => !text.includes('status of 404')), [], 'no console error, CSP violation, script error or dialog')
  await page.screenshot({ path: '/tmp/dashboard.png', fullPage: true })
})

test('cookie auth works through credentials: same-origin; a refused refresh is shown, the numbers kept', async (t) => {
  const sim = await startSimulator(t)
  let revoked = false
  const app = await routesApp(t, sim, {
    routes: {
      onRequest: async (request: { headers: Record<string, string | undefined> }, reply: { code: (n: number) => { send: (b: unknown) => unknown } }) => {
        if (!revoked && request.headers.cookie === `session=${TOKEN}`) return
        return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'log in again' })
      }
    }
  })
  const origin = await app.listen({ host: '127.0.0.1', port: 0 })
  const browser = await launch(t)
  const context = await browser.newContext()
  await context.addCookies([{ name: 'session', value: TOKEN, url: origin }])
  const page = await context.newPage()
  await page.goto(`${origin}/wechat/dashboard?refresh=1`)
  await rendered(page)
  t.same(Object.values(await sliceCounts(page)), [0, 0, 0, 0, 0], 'empty at first')
  t.equal(await page.textContent('#templates'), 'no messages yet')

  await app.wechat.send(shippedMessage())
  await page.waitForSelector('#pie [data-status="sent"][data-count="1"]', { timeout: 10_000 })
  t.pass('refreshed with the cookie alone')
  t.match(await page.getAttribute('#pie [data-status="sent"]', 'd'), /^M 50 2 A .* A /, 'a lone status is a full disc')
  t.equal(await page.getAttribute('#pie [data-status="failed"]', 'd'), '', 'an empty status draws nothing')
  revoked = true
  await page.waitForSelector('#state.error', { timeout: 10_000 })
  t.match(await page.textContent('#state'), /refresh failed \(HTTP 401\)/)
  t.match(await sliceCounts(page), { sent: 1 }, 'the last numbers stay on screen')
})

test('the response: strict CSP with this response\'s nonce, no caching, no framing, data escaped', async (t) => {
  const sim = await startSimulator(t)
  // validation 'off' lets the hostile templateId reach WeChat and come back as a recorded failure.
  const app = await routesApp(t, sim, { plugin: { validation: 'off' } })
  await produceTraffic(app, sim)
  const res = await call(app, 'GET', '/wechat/dashboard')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/html; charset=utf-8/)
  const csp = String(res.headers['content-security-policy'])
  const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(csp)?.[1]
  t.ok(nonce, 'a nonce')
  t.match(csp, /default-src 'none'/)
  t.match(csp, `style-src 'nonce-${nonce}'`)
  t.match(csp, "connect-src 'self'")
  t.match(csp, "frame-ancestors 'none'")
  t.notMatch(csp, /unsafe|https?:|\*/, 'no unsafe-inline, no host, no wildcard')
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(res.headers['x-frame-options'], 'DENY')
  t.equal(res.headers['referrer-policy'], 'no-referrer')
  t.equal([...res.body.matchAll(/<script nonce="([^"]+)">/g)].length, 1)
  t.ok(res.body.includes(`<script nonce="${nonce}">`) && res.body.includes(`<style nonce="${nonce}">`))
  t.notMatch(res.body, /<(?:script|link|img|iframe|object)\b[^>]*\b(?:src|href)=|url\(|@import/, 'nothing loaded from anywhere')
  t.notOk(res.body.includes(HOSTILE_TEMPLATE) || res.body.includes('</script><img'), 'no caller or WeChat markup in the HTML')
  t.ok(res.body.includes('\\u003c/script\\u003e\\u003cimg'), 'the errmsg travels escaped inside the JSON block')
  const again = await call(app, 'GET', '/wechat/dashboard')
  t.not(again.headers['content-security-policy'], csp, 'a new nonce per response')
  t.equal((await call(app, 'GET', '/wechat/dashboard?refresh=0')).statusCode, 400)
  // (audit: TypeBox read '1e309', '1.5' and '1e3' by their leading digit, as 1: a 200 for a request that meant something else)
  for (const refresh of ['1e309', '1.5', '1e3', '0x10', '']) {
    const bad = await call(app, 'GET', `/wechat/dashboard?refresh=${refresh}`)
    t.equal(bad.statusCode, 400, `refresh=${refresh}`)
    t.match(bad.json(), { message: /refresh must be an integer/ })
  }
  t.equal((await call(app, 'GET', '/wechat/dashboard?refresh=30')).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: `/wechat/dashboard?token=${TOKEN}` })).statusCode, 200, 'a hook may accept ?token= for the page')
})
