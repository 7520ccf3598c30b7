import { test } from 'tap'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import wechatPush from '../lib/index.js'
import type { WechatSimulator } from '../lib/testing/index.js'
import { buildApp, startSimulator } from './helpers/app.js'
import type { Teardown } from './helpers/app.js'
import { captureLogs } from './helpers/log-capture.js'
import { redisFor, startRedis, uniquePrefix } from './helpers/redis-server.js'
import { identity, inspectQueue, messageIdentity, numbered, queuedIds, sleep, until } from './queue-helpers.js'

interface HookAppOptions {
  redisUrl?: string
  keyPrefix?: string
  logger?: Record<string, unknown>
  routes?: (app: FastifyInstance) => void
}

/** An app with the plugin and the test's routes, declared before ready(). */
async function hookApp (t: Teardown, sim: WechatSimulator, options: HookAppOptions = {}): Promise<FastifyInstance> {
  return buildApp(t, sim, {
    redisUrl: options.redisUrl,
    logger: options.logger,
    plugin: { timeout: 2000, keyPrefix: options.keyPrefix ?? uniquePrefix('hook') },
    setup: options.routes
  })
}

const accepted = (sim: WechatSimulator): string[] => sim.accepted.map(identity)

for (const kind of ['memory', 'bullmq'] as const) {
  test(`${kind} queue: reply.wechatPush on a 2xx response → queued and sent`, async (t) => {
    const sim = await startSimulator(t)
    const redisUrl = await redisFor(t, kind)
    const app = await hookApp(t, sim, {
      redisUrl,
      routes: (app) => {
        app.post('/orders/:n/ship', async (request, reply) => {
          const n = Number((request.params as { n: string }).n)
          reply.wechatPush(numbered('H', n))
          return { shipped: n }
        })
        app.post('/orders/:n/ship-twice', async (request, reply) => {
          const n = Number((request.params as { n: string }).n)
          reply.wechatPush(numbered('H', n)).wechatPush([numbered('H', n + 1), numbered('H', n + 2)])
          reply.code(201)
          return { shipped: n }
        })
      }
    })
    const res = await app.inject({ method: 'POST', url: '/orders/1/ship' })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { shipped: 1 })
    const res2 = await app.inject({ method: 'POST', url: '/orders/10/ship-twice' })
    t.equal(res2.statusCode, 201)
    await until('4 accepted', () => sim.accepted.length >= 4)
    // (a record turns sent once the worker has WeChat's answer, a moment after WeChat has the message)
    await until('4 sent', async () => (await app.wechat.stats()).sent >= 4)
    await sleep(200) // room for a duplicate to show
    t.same(accepted(sim).sort(), [1, 10, 11, 12].map((n) => messageIdentity(numbered('H', n))).sort())
    const stats = await app.wechat.stats()
    t.equal(stats.total, 4)
    t.equal(stats.sent, 4)
  })
}

test('no push when the response is 4xx/5xx: reply.code(400), a thrown error, reply.send(err)', async (t) => {
  const sim = await startSimulator(t)
  const app = await hookApp(t, sim, {
    routes: (app) => {
      app.post('/bad-request', async (_request, reply) => {
        reply.wechatPush(numbered('N', 1))
        reply.code(400)
        return { error: 'nope' }
      })
      app.post('/throws', async (_request, reply) => {
        reply.wechatPush(numbered('N', 2))
        throw new Error('boom')
      })
      app.post('/conflict', async (_request, reply) => {
        reply.wechatPush(numbered('N', 3))
        const err = Object.assign(new Error('taken'), { statusCode: 409 })
        return reply.send(err)
      })
      app.post('/config-400', { config: { wechatPush: () => numbered('N', 4) } }, async (_request, reply) => reply.code(422).send({ invalid: true }))
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/bad-request' })).statusCode, 400)
  t.equal((await app.inject({ method: 'POST', url: '/throws' })).statusCode, 500)
  t.equal((await app.inject({ method: 'POST', url: '/conflict' })).statusCode, 409)
  t.equal((await app.inject({ method: 'POST', url: '/config-400' })).statusCode, 422)
  await sleep(500)
  t.equal(sim.counters.send, 0, 'nothing sent')
  t.equal((await app.wechat.stats()).total, 0, 'nothing queued')
  t.same(app.wechat.handlerPushes(), { queued: 0, skipped: 4, failed: 0, waiting: 0 }, 'counted as skipped')
})

test('config.wechatPush: a message, an array, null; it gets the object the handler returned', async (t) => {
  const sim = await startSimulator(t)
  const seen: unknown[] = []
  const app = await hookApp(t, sim, {
    routes: (app) => {
      app.post('/one', {
        config: {
          wechatPush: (_request, _reply, payload) => { seen.push(payload); return numbered('G', (payload as { n: number }).n) }
        }
      }, async () => ({ n: 1 }))
      app.post('/many', {
        config: { wechatPush: async (_request, _reply, payload) => [numbered('G', (payload as { n: number }).n), numbered('G', 3)] }
      }, async () => ({ n: 2 }))
      app.post('/none', { config: { wechatPush: () => null } }, async () => ({ n: 4 }))
      app.post('/both', { config: { wechatPush: () => numbered('G', 5) } }, async (_request, reply) => {
        reply.wechatPush(numbered('G', 6))
        return { n: 5 }
      })
    }
  })
  for (const url of ['/one', '/many', '/none', '/both']) t.equal((await app.inject({ method: 'POST', url })).statusCode, 200, url)
  await until('5 accepted', () => sim.accepted.length >= 5)
  await sleep(300)
  t.same(accepted(sim).sort(), [1, 2, 3, 5, 6].map((n) => messageIdentity(numbered('G', n))).sort())
  t.same(seen, [{ n: 1 }], 'the handler\'s object, before serialisation')
})

test('a throwing config.wechatPush does not change the response; it is logged', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs('info')
  const app = await hookApp(t, sim, {
    logger: logs.logger,
    routes: (app) => {
      app.post('/sync-throw', { config: { wechatPush: () => { throw new Error('config broke') } } }, async (_request, reply) => reply.code(201).send({ ok: 1 }))
      app.post('/async-throw', { config: { wechatPush: async () => { throw new Error('config broke later') } } }, async () => 'plain text')
    }
  })
  const one = await app.inject({ method: 'POST', url: '/sync-throw' })
  t.equal(one.statusCode, 201)
  t.same(one.json(), { ok: 1 })
  const two = await app.inject({ method: 'POST', url: '/async-throw' })
  t.equal(two.statusCode, 200)
  t.equal(two.body, 'plain text')
  await until('logged twice', () => logs.parsed().filter((l) => /config\.wechatPush threw/.test(String(l.msg))).length === 2)
  t.equal(sim.counters.send, 0)
})

test('the response does not wait for WeChat (500 ms latency): it is back before the message is sent', async (t) => {
  const sim = await startSimulator(t, { latencyMs: 500 })
  const app = await hookApp(t, sim, {
    routes: (app) => {
      app.get('/ping', async (_request, reply) => {
        reply.wechatPush(numbered('L', 1))
        return { pong: true }
      })
    }
  })
  await app.wechat.getToken()
  const res = await app.inject({ method: 'GET', url: '/ping' })
  t.equal(res.statusCode, 200)
  t.equal(sim.accepted.length, 0, 'not yet sent when the response is back')
  t.equal(sim.requests.filter((r) => r.endpoint === 'send').length, 0, 'no send answered yet')
  await until('sent afterwards', () => sim.accepted.length === 1)
  await until('answered afterwards', () => sim.requests.some((r) => r.endpoint === 'send'))
})

test('an invalid pushed message: the response is unaffected, the failure is logged, valid pushes of the same response still go', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs('info')
  const app = await hookApp(t, sim, {
    logger: logs.logger,
    routes: (app) => {
      app.post('/mixed', async (_request, reply) => {
        reply.wechatPush(numbered('V', 1))
        reply.wechatPush({ toUser: 'oUser-000001', templateId: numbered('V', 2).templateId, data: { thing2: 'x'.repeat(40) } })
        reply.wechatPush(numbered('V', 3))
        return { ok: true }
      })
      app.post('/only-bad', async (_request, reply) => {
        reply.wechatPush({ toUser: '', templateId: '', data: {} } as never)
        return { ok: 'still' }
      })
    }
  })
  const mixed = await app.inject({ method: 'POST', url: '/mixed' })
  t.equal(mixed.statusCode, 200)
  t.same(mixed.json(), { ok: true })
  const bad = await app.inject({ method: 'POST', url: '/only-bad' })
  t.equal(bad.statusCode, 200)
  t.same(bad.json(), { ok: 'still' })
  await until('the two valid ones sent', () => sim.accepted.length >= 2)
  await sleep(300)
  t.same(accepted(sim).sort(), [1, 3].map((n) => messageIdentity(numbered('V', n))).sort(), 'the valid messages are not lost with the invalid one')
  const failures = logs.parsed().filter((l) => /handler push could not be queued/.test(String(l.msg)))
  t.equal(failures.length, 2, 'each invalid message logged')
  t.ok(failures.every((l) => l.code === 'FST_WECHAT_INVALID_MESSAGE'))
  t.equal((await app.wechat.stats()).total, 2)
  t.same(app.wechat.handlerPushes(), { queued: 2, skipped: 0, failed: 2, waiting: 0 }, 'counted')
})

test('bullmq queue: close() waits for handler pushes still being queued; the next instance sends them', async (t) => {
  const sim = await startSimulator(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const keyPrefix = uniquePrefix('hook-close')
  const routes = (app: FastifyInstance): void => {
    app.post('/ship/:n', {
      config: {
        // Looking the recipient up takes a while (a database call): the queueing outlives the response.
        wechatPush: async (_request, _reply, payload) => {
          await sleep(2500)
          return numbered('W', (payload as { n: number }).n + 100)
        }
      }
    }, async (request, reply) => {
      const n = Number((request.params as { n: string }).n)
      reply.wechatPush(numbered('W', n))
      return { n }
    })
  }
  const first = await hookApp(t, sim, { redisUrl: redis.url, keyPrefix, routes })
  const responses = await Promise.all(Array.from({ length: 10 }, (_, n) => first.inject({ method: 'POST', url: `/ship/${n}` })))
  t.ok(responses.every((r) => r.statusCode === 200))
  await first.close() // right after the responses: the queueing is still under way
  const atClose = sim.accepted.length
  const queue = inspectQueue(redis.url, keyPrefix, sim.appId)
  t.teardown(() => queue.close())
  t.equal((await queuedIds(queue, 'wait', 'active', 'completed', 'delayed', 'failed')).size, 20, 'every push is in the queue when close resolves')

  const second = await hookApp(t, sim, { redisUrl: redis.url, keyPrefix, routes })
  await until('all 20 accepted', () => sim.accepted.length >= 20)
  await until('all 20 sent', async () => (await second.wechat.stats()).sent >= 20)
  await sleep(300) // room for a duplicate to show
  const stats = await second.wechat.stats()
  t.equal(stats.total, 20, 'every push was recorded before close resolved')
  t.equal(stats.sent, 20)
  t.equal(new Set(accepted(sim)).size, 20, 'no duplicates')
  t.comment(`${atClose} sent by the first instance before it closed`)
})

test('queue: false: declaring a route with config.wechatPush fails; reply.wechatPush() is logged and counted, the response unaffected', async (t) => {
  const sim = await startSimulator(t)
  const declared = Fastify()
  t.teardown(() => declared.close())
  await declared.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url, queue: false })
  await declared.after()
  t.throws(() => declared.get('/declared', { config: { wechatPush: () => numbered('QO', 1) } }, async () => ({ ok: 1 })),
    { code: 'FST_WECHAT_OPTIONS', message: /GET \/declared: config\.wechatPush needs the queue, which is off \(queue: false\)/ })

  // Before, reply.wechatPush was not a function there: the route answered 500.
  const logs = captureLogs('info')
  const app = await buildApp(t, sim, {
    logger: logs.logger,
    plugin: { queue: false },
    setup: (app) => { app.get('/pushes', async (_request, reply) => { reply.wechatPush(numbered('QO', 2)); return { ok: 2 } }) }
  })
  const response = await app.inject('/pushes')
  t.equal(response.statusCode, 200)
  t.same(response.json(), { ok: 2 })
  await until('counted as failed', () => app.wechat.handlerPushes().failed === 1)
  t.match(logs.parsed().find((l) => l.msg === 'wechat: a handler push could not be queued'), { code: 'FST_WECHAT_QUEUE', reason: /queue is off/ })
  t.equal(sim.counters.send, 0)
})

// A later onSend hook that throws makes Fastify run onSend again for its 500: the same pushes were
// counted twice (queued and skipped), for reply.wechatPush and config.wechatPush alike. Failed before.
// reply.hijack() skips onSend, where pushes are taken: a hijacked response's pushes were dropped
// without a count or a log. Failed before (nothing sent, all counters 0).
test('a hijacked reply (raw response) and a push made after the response went out are queued by their status too', async (t) => {
  const sim = await startSimulator(t)
  const app = await hookApp(t, sim, {
    routes: (app) => {
      app.post('/raw-ok', (_request, reply) => {
        reply.wechatPush(numbered('J', 1))
        reply.hijack()
        reply.raw.writeHead(200, { 'content-type': 'text/plain' })
        reply.raw.end('streamed')
      })
      app.post('/raw-ok-late', (_request, reply) => {
        reply.hijack()
        reply.raw.writeHead(201, { 'content-type': 'text/plain' })
        reply.raw.end('done')
        reply.wechatPush(numbered('J', 2))
      })
      app.post('/raw-fail', (_request, reply) => {
        reply.wechatPush(numbered('J', 3))
        reply.hijack()
        reply.raw.writeHead(503)
        reply.raw.end()
      })
      app.register(async (scoped) => {
        scoped.addHook('onResponse', (_request, reply, done) => {
          reply.wechatPush(numbered('J', 4))
          done()
        })
        scoped.post('/after', async () => ({ ok: true }))
      })
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/raw-ok' })).body, 'streamed')
  t.equal((await app.inject({ method: 'POST', url: '/raw-ok-late' })).statusCode, 201)
  t.equal((await app.inject({ method: 'POST', url: '/raw-fail' })).statusCode, 503)
  t.equal((await app.inject({ method: 'POST', url: '/after' })).statusCode, 200)
  await until('3 accepted', () => sim.accepted.length >= 3)
  await sleep(300)
  t.same(accepted(sim).sort(), [1, 2, 4].map((n) => messageIdentity(numbered('J', n))).sort(), 'the 2xx ones sent, once each')
  t.same(app.wechat.handlerPushes(), { queued: 3, skipped: 1, failed: 0, waiting: 0 })
})

// takeUnsent went by reply.sent, which a hijacked reply has at once: a client that left before the
// hijacked handler wrote anything got its pushes queued at the default status 200, though the handler
// then answered 500. And a config.wechatPush returning a revoked Proxy threw in onSend: a 500. Failed before.
test('a hijacked reply whose client left before any response: skipped; a config.wechatPush result that cannot be read: failed, the response unaffected', async (t) => {
  const sim = await startSimulator(t)
  const app = await hookApp(t, sim, {
    routes: (app) => {
      app.get('/slow-raw', (_request, reply) => {
        reply.wechatPush(numbered('K', 1))
        reply.hijack()
        setTimeout(() => { if (!reply.raw.destroyed) { reply.raw.writeHead(500); reply.raw.end() } }, 400)
      })
      app.get('/config-revoked', {
        config: {
          wechatPush: () => {
            const { proxy, revoke } = Proxy.revocable({}, {})
            revoke()
            return proxy as never
          }
        }
      }, async () => ({ ok: true }))
    }
  })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const controller = new AbortController()
  setTimeout(() => controller.abort(), 100)
  await fetch(`${address}/slow-raw`, { signal: controller.signal }).catch(() => {})
  await until('the push is settled', () => app.wechat.handlerPushes().skipped + app.wechat.handlerPushes().queued > 0)
  const res = await fetch(`${address}/config-revoked`)
  t.equal(res.status, 200, 'the response is not affected')
  await sleep(500)
  t.same(app.wechat.handlerPushes(), { queued: 0, skipped: 1, failed: 1, waiting: 0 })
  t.equal(sim.counters.send, 0)
})

test('a later onSend hook that throws: each push is counted once', async (t) => {
  const sim = await startSimulator(t)
  const app = await hookApp(t, sim, {
    routes: (app) => {
      app.post('/ship', async (request, reply) => {
        reply.wechatPush(numbered('T', 1))
        return { ok: true }
      })
      app.post('/ship-config', { config: { wechatPush: () => numbered('T', 2) } }, async () => ({ ok: true }))
      app.addHook('onSend', async (request, reply, payload) => {
        if (reply.statusCode < 400) throw new Error('a later hook failed')
        return payload
      })
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/ship' })).statusCode, 500)
  t.equal((await app.inject({ method: 'POST', url: '/ship-config' })).statusCode, 500)
  const c = app.wechat.handlerPushes()
  t.equal(c.queued + c.skipped + c.failed + c.waiting, 2, `counted once each: ${JSON.stringify(c)}`)
})

// An async config.wechatPush that never settles (a hung database call) hung app.close() forever.
// close() now gives up on it after its 10 s grace and logs the push as lost. Failed before.
test('close() does not wait forever for an async config.wechatPush that never settles', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs('error')
  const app = await hookApp(t, sim, {
    logger: logs.logger,
    routes: (app) => {
      app.post('/hang', { config: { wechatPush: () => new Promise<never>(() => {}) } }, async () => ({ ok: true }))
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/hang' })).statusCode, 200)
  const started = Date.now()
  const closed = await Promise.race([app.close().then(() => true), sleep(25_000).then(() => false)])
  t.ok(closed, `close() returned (${Date.now() - started} ms)`)
})

// close() after its 10 s grace, with a queue add still waiting on Redis (here queue.replicas on a
// Redis without replicas: each add waits 3 s for a WAIT that never confirms), spun in a loop that
// never yielded to I/O: the add never got its answer and the heap filled up (out of memory in
// ~2 s). Failed before (the test process died).
test('close() during a slow queue add: bounded, and the process survives', async (t) => {
  const sim = await startSimulator(t)
  const redisUrl = await redisFor(t, 'bullmq')
  const logs = captureLogs('error')
  const app = await buildApp(t, sim, {
    redisUrl,
    logger: logs.logger,
    plugin: { keyPrefix: uniquePrefix('slowadd'), queue: { replicas: 1, replicaTimeout: 3000 } },
    setup: (app) => {
      app.post('/ship', async (request, reply) => {
        reply.wechatPush(numbered('S', 1))
        return { ok: true }
      })
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/ship' })).statusCode, 200)
  await sleep(100)
  const started = Date.now()
  const closed = await Promise.race([app.close().then(() => true), sleep(30_000).then(() => false)])
  t.ok(closed, `close() returned (${Date.now() - started} ms)`)
  t.ok(process.memoryUsage().heapUsed < 1024 ** 3, `heap ${Math.round(process.memoryUsage().heapUsed / 1024 ** 2)} MB`)
})

// From an audit of hostile use (each failed before):
// - the decorator kept the caller's object and it was read at flush time: a handler reusing one object
//   for three users sent the last one's message three times; a change after the push went out;
// - an array whose reading throws half way was half queued (and config.wechatPush's left waiting < 0);
// - a hijacked reply whose client was already gone dropped later pushes without a count or a word;
// - a push made after close() had finished waiting was dropped (in-process: counted queued).
test('pushes are copied when made: one object reused for several users, or changed after the push, goes out as pushed', async (t) => {
  const sim = await startSimulator(t)
  const app = await hookApp(t, sim, {
    routes: (app) => {
      app.post('/notify', async (_request, reply) => {
        const message = numbered('R', 0)
        for (const [i, user] of ['alice', 'bob', 'carol'].entries()) {
          message.toUser = `oR-${user}-openid-0000`
          message.data = { ...message.data, character_string1: `R${i}` }
          reply.wechatPush(message)
        }
        message.toUser = 'oREDACTED-openid-00000'
        return { ok: true }
      })
      app.post('/config', {
        config: {
          wechatPush: () => {
            const m = numbered('S', 1)
            const list = [numbered('S', 2), m]
            Object.defineProperty(list, 2, { get () { throw new Error('unreadable') }, enumerable: true })
            return list
          }
        }
      }, async () => ({ ok: true }))
      app.post('/array', async (_request, reply) => {
        const list = [numbered('T', 1), numbered('T', 2)]
        Object.defineProperty(list, 2, { get () { throw new Error('unreadable') }, enumerable: true })
        reply.wechatPush(list)
        return { ok: true }
      })
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/notify' })).statusCode, 200)
  await until('3 sent', () => sim.accepted.length >= 3)
  t.same(sim.accepted.map((m) => `${m.touser}|${m.data.character_string1?.value}`).sort(), ['oR-alice-openid-0000|R0', 'oR-bob-openid-0000|R1', 'oR-carol-openid-0000|R2'])
  t.equal((await app.inject({ method: 'POST', url: '/array' })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/config' })).statusCode, 200)
  await sleep(300)
  t.equal(sim.accepted.length, 3, 'nothing of an array that could not be read whole')
  t.same(app.wechat.handlerPushes(), { queued: 3, skipped: 0, failed: 2, waiting: 0 }, 'each unreadable array counted once as failed; waiting never below 0')
})

test('a push on a hijacked reply whose client is gone, and a push after close(): counted, never dropped silently', async (t) => {
  const sim = await startSimulator(t)
  let pushLater: (() => void) | undefined
  let afterClose: (() => void) | undefined
  const app = await hookApp(t, sim, {
    routes: (app) => {
      app.get('/stream', (_request, reply) => {
        reply.hijack()
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
        reply.raw.write('data: hello\n\n')
        pushLater = () => { reply.wechatPush(numbered('U', 1)) }
      })
      app.get('/late', async (_request, reply) => {
        afterClose = () => { reply.wechatPush(numbered('U', 2)) }
        return { ok: true }
      })
    }
  })
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const controller = new AbortController()
  const res = await fetch(`${address}/stream`, { signal: controller.signal })
  t.equal(res.status, 200)
  controller.abort()
  await until('the server saw the client leave', () => pushLater !== undefined)
  await sleep(200)
  pushLater?.()
  await until('the push on the gone client is settled', () => app.wechat.handlerPushes().queued + app.wechat.handlerPushes().skipped > 0)
  t.same(app.wechat.handlerPushes(), { queued: 1, skipped: 0, failed: 0, waiting: 0 }, 'taken by the status the stream had sent (200)')
  t.equal((await app.inject('/late')).statusCode, 200)
  await app.close()
  afterClose?.()
  await sleep(100)
  t.same(app.wechat.handlerPushes(), { queued: 1, skipped: 0, failed: 1, waiting: 0 }, 'the push after close() is counted failed, not queued and dropped')
})

// The push was decided in this plugin's onSend, before the status was final: a later onSend hook's
// reply.code(429), or a stream payload failing before its first byte (a 500), still had it sent.
// Now it goes by the status the response went out with. Failed before.
test('pushes go by the status the response went out with: a later hook\'s 429 or a stream that fails into a 500 sends nothing', async (t) => {
  const sim = await startSimulator(t)
  const { Readable } = await import('node:stream')
  const app = await hookApp(t, sim, {
    routes: (app) => {
      app.post('/limited', { config: { wechatPush: () => numbered('V', 2) } }, async (_request, reply) => {
        reply.wechatPush(numbered('V', 1))
        return { ok: true }
      })
      app.get('/broken-stream', { config: { wechatPush: () => numbered('V', 4) } }, async (_request, reply) => {
        reply.wechatPush(numbered('V', 3))
        return reply.type('text/plain').send(new Readable({ read () { this.destroy(new Error('the file is gone')) } }))
      })
      app.post('/fine', async (_request, reply) => {
        reply.wechatPush(numbered('V', 5))
        return { ok: true }
      })
      app.addHook('onSend', async (request, reply, payload) => {
        if (request.url === '/limited') reply.code(429)
        return payload
      })
    }
  })
  t.equal((await app.inject({ method: 'POST', url: '/limited' })).statusCode, 429)
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  const broken = await fetch(`${address}/broken-stream`).then((res) => res.status, () => 'reset')
  t.not(broken, 200, `the client did not get a 200 (${broken})`)
  t.equal((await app.inject({ method: 'POST', url: '/fine' })).statusCode, 200)
  await until('the 2xx push is sent', () => sim.accepted.length >= 1)
  await sleep(300)
  t.same(accepted(sim), [messageIdentity(numbered('V', 5))], 'only the push of the response that went out 2xx')
  t.same(app.wechat.handlerPushes(), { queued: 1, skipped: 4, failed: 0, waiting: 0 })
})

// A handler push that threw something other than an Error (null, undefined, a Symbol) crashed the
// error's own logging ((err as Error).message of null): a 500 instead of the handler's response,
// and an async config.wechatPush lost its log line. Failed before (4 of the 5 routes answered 500).
test('a handler push that throws a non-Error (null, undefined, a Symbol) does not change the response; it is logged and counted', async (t) => {
  const sim = await startSimulator(t)
  const logs = captureLogs('info')
  const throwingIterable = (thrown: unknown): unknown => new Proxy([numbered('N', 1)], {
    get (target, key, receiver) {
      if (key === Symbol.iterator) throw thrown
      return Reflect.get(target, key, receiver)
    }
  })
  const app = await hookApp(t, sim, {
    logger: logs.logger,
    routes: (app) => {
      app.get('/config-null', { config: { wechatPush: () => { throw null } } }, async () => ({ ok: 1 })) // eslint-disable-line no-throw-literal
      app.get('/config-undefined', { config: { wechatPush: () => { throw undefined } } }, async () => ({ ok: 2 })) // eslint-disable-line no-throw-literal
      app.get('/config-then-getter', { config: { wechatPush: () => ({ get then () { throw null } }) as never } }, async () => ({ ok: 3 })) // eslint-disable-line no-throw-literal
      app.get('/config-async-symbol', { config: { wechatPush: async () => { throw Symbol('nope') } } }, async () => ({ ok: 4 }))
      app.get('/reply-iterator-null', async (_request, reply) => {
        reply.wechatPush(throwingIterable(null) as never)
        return { ok: 5 }
      })
    }
  })
  const routes = ['/config-null', '/config-undefined', '/config-then-getter', '/config-async-symbol', '/reply-iterator-null']
  for (const [i, url] of routes.entries()) {
    const res = await app.inject({ method: 'GET', url })
    t.equal(res.statusCode, 200, `${url}: the response is not affected`)
    t.same(res.json(), { ok: i + 1 }, url)
  }
  await until('each logged', () => logs.parsed().filter((l) => /config\.wechatPush threw|reply\.wechatPush got something/.test(String(l.msg))).length === 5)
  const reasons = logs.parsed().filter((l) => /config\.wechatPush threw|reply\.wechatPush got something/.test(String(l.msg))).map((l) => l.reason).sort()
  t.same(reasons, ['Symbol(nope)', 'null', 'null', 'null', 'undefined'])
  t.same(app.wechat.handlerPushes(), { queued: 0, skipped: 0, failed: 5, waiting: 0 })
  t.equal(sim.counters.send, 0)
})
