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
})
