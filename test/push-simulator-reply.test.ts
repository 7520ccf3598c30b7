import { test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { aesKeyFromEncodingAESKey } from '../lib/push/crypto.js'
import { buildEncryptedEnvelope, buildPushBody } from '../lib/push/envelope.js'
import { pushSignature } from '../lib/push/signature.js'
import { startSimulator } from './helpers/app.js'
import type { Teardown } from './helpers/app.js'
import { KEY, TOKEN } from './push-helpers.js'

// A passive reply (a customer-service style answer to a pushed message, WECHAT.md §6.5) was taken as
// "not acknowledged": the simulator pushed the same message 3 times to an app that answered it
// correctly. Only `success` or an empty body ended the retries. Failed before (3 attempts each).

/** An app that answers every push with `reply()`. */
async function replyingApp (t: Teardown, reply: () => string): Promise<string> {
  const server = createServer((request, response) => {
    request.resume()
    request.on('end', () => { response.writeHead(200, { 'content-type': 'text/plain' }); response.end(reply()) })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const TEXT = { ToUserName: 'oUser-0001', FromUserName: 'gh_0123456789ab', CreateTime: 1767225600, MsgType: 'text', Content: '你好' }
const INCOMING = { FromUserName: 'oUser-0001', MsgType: 'text', Content: 'hi', MsgId: '23456789012345678' }

test('a passive reply in the push\'s format and mode ends the retries as success does; a wrong one does not', async (t) => {
  const sim = await startSimulator(t, { pushRetryDelayMs: 10 })
  const key = aesKeyFromEncodingAESKey(KEY)
  const encrypted = (format: 'xml' | 'json', token = TOKEN): string => {
    const envelope = buildEncryptedEnvelope(TEXT, { format, token, key, appId: sim.appId, timestamp: '1767225600', nonce: '12345' })
    const timestamp = envelope.query.timestamp
    const nonce = envelope.query.nonce
    const fields = { Encrypt: envelope.encrypt, MsgSignature: pushSignature([token, timestamp, nonce, envelope.encrypt]), TimeStamp: Number(timestamp), Nonce: nonce }
    return buildPushBody(fields, { format })
  }
  const cases: Array<{ name: string, mode: 'plaintext' | 'compatible' | 'safe', format: 'xml' | 'json', reply: () => string, attempts: number }> = [
    { name: 'safe JSON, encrypted reply', mode: 'safe', format: 'json', reply: () => encrypted('json'), attempts: 1 },
    { name: 'safe XML, encrypted reply', mode: 'safe', format: 'xml', reply: () => encrypted('xml'), attempts: 1 },
    { name: 'plaintext XML, plain reply', mode: 'plaintext', format: 'xml', reply: () => buildPushBody(TEXT, { format: 'xml' }), attempts: 1 },
    { name: 'compatible JSON, plain reply', mode: 'compatible', format: 'json', reply: () => buildPushBody(TEXT, { format: 'json' }), attempts: 1 },
    { name: 'compatible XML, encrypted reply', mode: 'compatible', format: 'xml', reply: () => encrypted('xml'), attempts: 1 },
    { name: 'safe mode, plain reply', mode: 'safe', format: 'xml', reply: () => buildPushBody(TEXT, { format: 'xml' }), attempts: 3 },
    { name: 'plaintext mode, encrypted reply', mode: 'plaintext', format: 'xml', reply: () => encrypted('xml'), attempts: 3 },
    { name: 'safe, signed with another Token', mode: 'safe', format: 'json', reply: () => encrypted('json', 'otherToken'), attempts: 3 },
    { name: 'XML push, JSON reply', mode: 'plaintext', format: 'xml', reply: () => buildPushBody(TEXT, { format: 'json' }), attempts: 3 },
    { name: 'a reply without MsgType', mode: 'plaintext', format: 'json', reply: () => JSON.stringify({ ...TEXT, MsgType: undefined }), attempts: 3 },
    { name: 'any other text', mode: 'plaintext', format: 'xml', reply: () => 'ok', attempts: 3 }
  ]
  for (const { name, mode, format, reply, attempts } of cases) {
    const url = await replyingApp(t, reply)
    const before = sim.pushes.length
    await sim.push(url, INCOMING, { token: TOKEN, encodingAESKey: KEY, mode, format })
    t.equal(sim.pushes.length - before, attempts, name)
  }
})
