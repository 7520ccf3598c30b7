import { test } from 'tap'
import { fork } from 'node:child_process'
import path from 'node:path'
import { exitCode } from './helpers/fork.js'

test('the example runs on embedded defaults (simulator + memory store) and sends a message', async (t) => {
  let output = ''
  const child = fork(path.join(__dirname, '..', 'example', 'server.ts'), [], {
    env: { ...process.env, EXAMPLE_EXIT_AFTER_DEMO: '1', PORT: '0', WECHAT_APPID: '', WECHAT_SECRET: '', REDIS_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  child.stdout?.on('data', (chunk) => { output += String(chunk) })
  child.stderr?.on('data', (chunk) => { output += String(chunk) })
  t.equal(await exitCode(child, 30_000), 0, 'the example exits cleanly after its demo')
  t.match(output, /using the built-in WeChat simulator/)
  t.match(output, /"statusCode":200,"body":\{"id":"[0-9a-f-]+","msgid":"\d{19}"\}/)
  t.match(output, /"statusCode":200,"body":\{"order":"20260302","paid":true\},"msg":"demo: order paid/, 'the handler push route answers at once')
  t.match(output, /"statusCode":200,"body":\{"id":"[0-9a-f-]+","status":"delivered"/, 'the simulator\'s receipt reached the push endpoint: the routes show the record delivered')
  t.match(output, /status page: http:\/\/127\.0\.0\.1:\d+\/wechat\/dashboard\?token=example-admin-token/)
})

test('the example\'s routes: the status page opens with ?token=, the routes refuse a request without it, and the token stays out of the log', async (t) => {
  let output = ''
  const child = fork(path.join(__dirname, '..', 'example', 'server.ts'), [], {
    env: { ...process.env, PORT: '0', WECHAT_APPID: '', WECHAT_SECRET: '', REDIS_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  t.teardown(() => { child.kill('SIGKILL') })
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the example did not finish its demo within 30 s')), 30_000)
    const onData = (chunk: Buffer): void => {
      output += String(chunk)
      const address = /status page: (http:\/\/127\.0\.0\.1:\d+)\//.exec(output)?.[1]
      if (address !== undefined) { clearTimeout(timer); resolve(address) }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
  })
  const address = await ready
  const page = await fetch(`${address}/wechat/dashboard?token=example-admin-token`)
  t.equal(page.status, 200)
  t.match(await page.text(), /<svg/)
  const stranger = await fetch(`${address}/wechat/stats`)
  t.equal(stranger.status, 401)
  const stats = await fetch(`${address}/wechat/stats`, { headers: { authorization: 'Bearer example-admin-token' } })
  t.equal(stats.status, 200)
  t.ok(((await stats.json()) as { total: number }).total >= 2, 'the demo\'s two messages are counted')
  // (the request log line of the page's request has been written by the time its answer arrived)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.match(output, /"url":"\/wechat\/dashboard\?token=\[redacted\]"/, 'the page\'s request is logged')
  t.notMatch(output, /"url":"[^"]*token=example-admin-token/, 'without the admin token')
})
