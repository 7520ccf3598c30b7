import { test } from 'tap'
import { fastifySchedule } from '@fastify/schedule'
import type { Test } from 'tap'
import Fastify from 'fastify'
import fastifyRedis from '@fastify/redis'
import wechatPush from '../lib/index.js'
import { startRedis } from './helpers/redis-server.js'
import { captureLogs } from './helpers/log-capture.js'

const base = { appId: 'wx0000000000000000', appSecret: 'super-secret-value-1234', baseUrl: 'http://127.0.0.1:9' }

async function bootError (t: Test, options: unknown, code = 'FST_WECHAT_OPTIONS'): Promise<Error> {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(wechatPush, options as never)
  let caught: Error | undefined
  await t.rejects(async () => { try { await app.ready() } catch (err) { caught = err as Error; throw err } }, { code })
  return caught as Error
}

test('missing credentials name the option', async (t) => {
  t.match((await bootError(t, { appSecret: 'x' })).message, /appId is required/)
  t.match((await bootError(t, { appId: 'wx1' })).message, /appSecret is required/)
  t.match((await bootError(t, undefined)).message, /appId is required/)
})

test('wrong types and unknown keys name the option', async (t) => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ timeout: 'fast' }, /timeout/],
    [{ timeout: -1 }, /timeout/],
    [{ tokenEndpoint: 'magic' }, /tokenEndpoint/],
    [{ refreshAhead: -5 }, /refreshAhead/],
    [{ refreshInterval: 0 }, /refreshInterval/],
    [{ store: 'disk' }, /store/],
    [{ retry: { attempts: 0 } }, /retry\.attempts/],
    [{ retry: { attempts: 2, minDelay: 500, maxDelay: 100 } }, /retry\.maxDelay/],
    [{ retry: 'yes' }, /retry must be an object/],
    [{ retry: { tries: 3 } }, /retry\.tries is not a known option/],
    [{ defaults: { lang: 'fr' } }, /defaults\.lang/],
    [{ validation: 'loose' }, /validation/],
    [{ queue: { concurrency: 0 } }, /queue\.concurrency/],
    [{ queue: true }, /queue must be false or an object/],
    [{ routes: {} }, /routes needs an auth hook/],
    [{ routes: { onRequest: 'nope' } }, /routes\.onRequest/],
    [{ push: { token: 'abc', encodingAESKey: 'short' } }, /push\.encodingAESKey/],
    [{ push: {} }, /push\.token/],
    [{ push: { token: 'abcdef', mode: 'safe' } }, /push\.encodingAESKey is required/],
    [{ credits: 'maybe' }, /credits/],
    [{ namespace: 'has space' }, /namespace/],
    [{ baseUrl: 'ftp://example.com' }, /baseUrl/],
    [{ baseUrl: 'not a url' }, /baseUrl/],
    [{ baseUrl: 'https://api.weixin.qq.com/cgi-bin' }, /baseUrl/],
    [{ baseUrl: [] }, /baseUrl/],
    [{ keyPrefix: 'a{b}' }, /keyPrefix/],
    [{ clock: { now: 5 } }, /clock/],
    [{ appSecretTypo: 'x' }, /appSecretTypo is not a known option/],
    [{ appId: 'wx 1' }, /appId/],
    [{ store: 'memory', redisNamespace: 'x' }, /redisNamespace/],
    // From the README audit (each failed before): the value as given, not JSON's null; a floor for
    // the token job's interval (0.0001 s ran it every millisecond); replicaTimeout alone did nothing.
    [{ timeout: Number.NaN }, /timeout.*\(got NaN\)/],
    [{ refreshAhead: Infinity }, /refreshAhead.*\(got Infinity\)/],
    [{ refreshInterval: 0.0001 }, /refreshInterval/],
    [{ queue: { replicaTimeout: 500 } }, /queue\.replicaTimeout needs queue\.replicas/],
    [{ baseUrl: 'https://user:pw@api.example.com/v1?k=s3cret' }, /got "https:\/\/api\.example\.com\/v1" and a query and credentials/],
    // From a hostile-input audit (each failed before): a limiter window no timer can wait made the
    // in-process queue spin on TimeoutOverflowWarning; a wildcard prefix failed in Fastify, uncoded;
    // a clock whose now() throws or is no time booted and broke every later call.
    [{ queue: { limiter: { max: 1, duration: 2 ** 40 } } }, /queue\.limiter\.duration/],
    [{ routes: { prefix: '/*', unprotected: true } }, /routes\.prefix/],
    // (audit: dot segments and percent-encoding mounted routes no normalising client reaches)
    [{ routes: { prefix: '/../..', unprotected: true } }, /routes\.prefix/],
    [{ routes: { prefix: '/api/.', unprotected: true } }, /routes\.prefix/],
    [{ routes: { prefix: '/%2e%2e', unprotected: true } }, /routes\.prefix/],
    [{ push: { token: 'tok', path: '/wechat/../push' } }, /push\.path/],
    [{ prefix: '/..', routes: { unprotected: true } }, /prefix must be a plain path/],
    [{ prefix: '/a*', routes: { unprotected: true } }, /prefix must be a plain path/],
    [{ push: { token: 'abc123', path: '/wechat/:id' } }, /push\.path/],
    [{ push: { token: 'has space' } }, /push\.token/],
    [{ push: { token: '' } }, /push\.token/],
    [{ retention: 0 }, /retention/],
    [{ clock: { now: () => Number.NaN } }, /clock\.now\(\) must return a time in ms since the epoch \(got NaN\)/],
    // (audit: 1e20 passed, then every record's timestamp threw: 500s from the routes, records lost)
    // (audit: a Date or a boxed number read as an empty object and passed)
    [{ retry: new Date() }, /retry must be an object \(got an instance of Date\)/],
    [{ queue: Object(5) }, /queue must be false or an object \(got an instance of Number\)/],
    [{ templates: new Map() }, /templates must be false or an object \(got an instance of Map\)/],
    [{ clock: { now: () => 1e20 } }, /clock\.now\(\) must return a time in ms since the epoch \(got 100000000000000000000\)/],
    [{ clock: { now: () => { throw new Error('clock-boom') } } }, /clock\.now\(\) threw \(clock-boom\)/],
    // From a later audit (each booted before): a secret of spaces or with a line break, or of a
    // megabyte, went to WeChat as it was; a NUL in keyPrefix went into every Redis key; a baseUrl
    // fragment was dropped without a word, and a repeated baseUrl made fail-over call one host twice.
    [{ appSecret: '      ' }, /appSecret/],
    [{ appSecret: 'abc\ndef' }, /appSecret/],
    [{ appSecret: 'a'.repeat(1_000_000) }, /appSecret/],
    [{ keyPrefix: 'wechat\u0000:' }, /keyPrefix/],
    [{ baseUrl: 'https://api.example.com/#frag' }, /baseUrl must be an origin, or an origin and a path, without query, fragment or credentials/],
    // a path is a prefix now, but WeChat's own path in it would be doubled in every call
    [{ baseUrl: 'https://api.weixin.qq.com/cgi-bin/' }, /baseUrl must end before WeChat's own path \(\/cgi-bin, \/wxaapi\): got "https:\/\/api\.weixin\.qq\.com\/cgi-bin\/", give "https:\/\/api\.weixin\.qq\.com"/],
    [{ baseUrl: 'https://proxy.example.com/wx/wxaapi/newtmpl' }, /give "https:\/\/proxy\.example\.com\/wx"/],
    [{ baseUrl: ['https://proxy.example.com/wx', 'https://proxy.example.com/wx/'] }, /baseUrl lists https:\/\/proxy\.example\.com\/wx twice/],
    [{ baseUrl: ['https://api.example.com', 'https://api.example.com/'] }, /baseUrl lists https:\/\/api\.example\.com twice/]
  ]
  for (const [extra, pattern] of cases) {
    const err = await bootError(t, { ...base, ...extra })
    t.match(err.message, pattern, JSON.stringify(extra))
  }
})

// What DESIGN.md and WECHAT.md leave open is taken: a Token is the developer's choice (§6.1; only the
// console limits it to 3-32 letters and digits), a namespace any key of app.wechat a user would pick,
// a retention of seconds (a test watching a record expire). Each failed at registration before.
// (review: an app's class instance with its fields is an options object like any; built-ins' are refused above)
class RetryConfig { attempts = 2 }
test('a Token with other printable characters, a namespace with a dash, a short retention, a class instance with fields boot', async (t) => {
  for (const extra of [{ push: { token: 'test-token_1' } }, { namespace: 'shop-a' }, { retention: 2 }, { retry: new RetryConfig() }]) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(wechatPush, { ...base, ...extra })
    await t.resolves(async () => { await app.ready() }, JSON.stringify(extra))
  }
})

test('a baseUrl with credentials or a query never echoes them', async (t) => {
  const err = await bootError(t, { ...base, baseUrl: 'https://user:pw@api.example.com/v1?k=s3cret' })
  t.notMatch(err.message, /pw|s3cret|user/)
})

test('a wrong appSecret type never echoes the value', async (t) => {
  const err = await bootError(t, { ...base, appSecret: 12345678 })
  t.match(err.message, /appSecret/)
  t.notMatch(err.message, /12345678/)
})

// An audit: a pattern's failure read "appSecret: Expected string to match '^[\x21-\x7e]+$'".
test('an option refused by its pattern says the rule in words, and never echoes a secret', async (t) => {
  const appSecret = await bootError(t, { ...base, appSecret: 'has spaces in it' })
  t.match(appSecret.message, /appSecret: must be printable ASCII without spaces/)
  t.notMatch(appSecret.message, /has spaces|Expected string/)
  const keyPrefix = await bootError(t, { ...base, keyPrefix: 'a{b}' })
  t.match(keyPrefix.message, /keyPrefix: must not contain braces, whitespace or control characters \(got "a\{b\}"\)/)
  const prefix = await bootError(t, { ...base, routes: { prefix: '/a/../b', unprotected: true } })
  t.match(prefix.message, /routes\.prefix: must be a plain path/)
})

test('store auto-selection: memory without redis, redis with it, redis required when asked', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())

  const memoryApp = Fastify()
  t.teardown(() => memoryApp.close())
  await memoryApp.register(wechatPush, { ...base })
  await memoryApp.ready()
  t.equal(memoryApp.wechat.storeKind, 'memory')

  const redisApp = Fastify()
  t.teardown(() => redisApp.close())
  await redisApp.register(fastifyRedis, { url: redis.url })
  await redisApp.register(wechatPush, { ...base })
  await redisApp.ready()
  t.equal(redisApp.wechat.storeKind, 'redis')

  const forcedMemory = Fastify()
  t.teardown(() => forcedMemory.close())
  await forcedMemory.register(fastifyRedis, { url: redis.url })
  await forcedMemory.register(wechatPush, { ...base, store: 'memory' })
  await forcedMemory.ready()
  t.equal(forcedMemory.wechat.storeKind, 'memory')

  const nsApp = Fastify()
  t.teardown(() => nsApp.close())
  await nsApp.register(fastifyRedis, { url: redis.url, namespace: 'shared' })
  await nsApp.register(wechatPush, { ...base, redisNamespace: 'shared' })
  await nsApp.ready()
  t.equal(nsApp.wechat.storeKind, 'redis')

  await bootError(t, { ...base, store: 'redis' })
  await bootError(t, { ...base, redisNamespace: 'missing' })
})

test('a second registration needs a namespace; namespaces work side by side', async (t) => {
  const twice = Fastify()
  t.teardown(() => twice.close())
  twice.register(wechatPush, { ...base })
  twice.register(wechatPush, { ...base, appId: 'wx2' })
  await t.rejects(async () => twice.ready(), { code: 'FST_WECHAT_OPTIONS', message: /namespace/ })

  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(wechatPush, { ...base })
  await app.register(wechatPush, { ...base, appId: 'wxshop', namespace: 'shop' })
  await app.register(wechatPush, { ...base, appId: 'wxgame', namespace: 'game' })
  await app.ready()
  t.equal(app.wechat.appId, base.appId)
  t.equal(app.wechat.shop.appId, 'wxshop')
  t.equal(app.wechat.game.appId, 'wxgame')

  const dup = Fastify()
  t.teardown(() => dup.close())
  dup.register(wechatPush, { ...base, namespace: 'a' })
  dup.register(wechatPush, { ...base, namespace: 'a' })
  await t.rejects(async () => dup.ready(), { code: 'FST_WECHAT_OPTIONS', message: /namespace 'a'/ })

  // A namespace named after a member (send, on...) was overwritten by the plain registration, or
  // overwrote it; '__proto__' replaced the object's prototype; 'constructor' after another namespace
  // was "already registered". Each member of app.wechat and of Object.prototype is refused. Failed before.
  for (const name of [...Object.keys(app.wechat).filter((k) => k !== 'shop' && k !== 'game'), '__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    const clash = Fastify()
    t.teardown(() => clash.close())
    clash.register(wechatPush, { ...base, appId: 'wxns', namespace: name })
    await t.rejects(async () => clash.ready(), { code: 'FST_WECHAT_OPTIONS', message: /is the name of a member/ }, `namespace '${name}'`)
  }
})

// One AppID registered in two sibling contexts under a scheduler the app registered at the root:
// ready() failed with toad-scheduler's uncoded "Job with an id ... is already registered". Failed before.
test('the same AppID in two sibling contexts sharing the app\'s scheduler: a coded error naming the fix', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySchedule)
  app.register(async (a) => { await a.register(wechatPush, { ...base }) })
  app.register(async (b) => { await b.register(wechatPush, { ...base }) })
  await t.rejects(async () => app.ready(), { code: 'FST_WECHAT_OPTIONS', message: /namespace/ })
  // Found at registration, before any onReady: the first registration's jobs never started (before,
  // its token and template intervals ran on and kept a process without close() alive). Failed before.
  t.equal(app.scheduler.getAllJobs().length, 0, 'no job of either registration was started')
})

// @fastify/redis registered with namespaces only makes fastify.redis an object of named clients:
// store 'auto' without redisNamespace fell back to the memory store (per-process tokens, a queue that
// is not durable) with a log line telling the user to register @fastify/redis, which they had done;
// store 'redis' said the same in its error. Both now fail naming the namespaces and redisNamespace. Failed before.
test('@fastify/redis with namespaces only: no silent memory fallback, an error naming the namespaces', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())

  // Returned in an object: a Fastify instance is a thenable, an async function would boot it.
  async function namespacedOnly (options: Record<string, unknown>): Promise<{ app: ReturnType<typeof Fastify> }> {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(fastifyRedis, { url: redis.url, namespace: 'cache' })
    await app.register(fastifyRedis, { url: redis.url, namespace: 'jobs' })
    app.register(wechatPush, { ...base, ...options } as never)
    return { app }
  }

  for (const store of [undefined, 'auto', 'redis']) {
    const { app } = await namespacedOnly(store === undefined ? {} : { store })
    await t.rejects(async () => app.ready(), {
      code: 'FST_WECHAT_OPTIONS',
      message: /fastify\.redis is not a Redis client \(@fastify\/redis namespaces registered: 'cache', 'jobs'\): set redisNamespace .*or store: 'memory'/
    }, `store: ${store ?? 'default'}`)
  }

  const { app: missing } = await namespacedOnly({ redisNamespace: 'shared' })
  await t.rejects(async () => missing.ready(), { code: 'FST_WECHAT_OPTIONS', message: /redisNamespace 'shared' needs fastify\.redis\['shared'\] \(@fastify\/redis namespaces registered: 'cache', 'jobs'\)/ })

  const { app: chosen } = await namespacedOnly({ redisNamespace: 'jobs' })
  await chosen.ready()
  t.equal(chosen.wechat.storeKind, 'redis')

  const { app: memory } = await namespacedOnly({ store: 'memory' })
  await memory.ready()
  t.equal(memory.wechat.storeKind, 'memory', "store: 'memory' says so and needs no client")
})

// Options that cannot be read failed ready() with whatever they threw (a bare null, a revoked Proxy's
// TypeError), uncoded. And a getter was read twice (validated, then used): a value that changed in
// between went through unchecked. Failed before.
test('options that cannot be read, or that change between reads: FST_WECHAT_OPTIONS, each value read once', async (t) => {
  const { proxy, revoke } = Proxy.revocable({ ...base }, {})
  revoke()
  t.match((await bootError(t, proxy)).message, /options could not be read/)
  const throwing = Object.defineProperty({ ...base }, 'timeout', { enumerable: true, get () { throw null } }) // eslint-disable-line no-throw-literal
  t.match((await bootError(t, throwing)).message, /options could not be read \(null\)/)
  t.match((await bootError(t, new Proxy({ ...base }, { ownKeys () { throw new Error('keys-boom') } }))).message, /options could not be read \(keys-boom\)/)
  t.match((await bootError(t, { ...base, clock: { get now () { throw new Error('getter-boom') } } })).message, /clock\.now\(\) threw \(getter-boom\)/)
  let reads = 0
  const lying = Object.defineProperty({ ...base }, 'timeout', { enumerable: true, get () { return reads++ === 0 ? 5000 : 'five seconds' } })
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  app.register(wechatPush, lying as never)
  await app.ready()
  t.equal(reads, 1, 'read once: the checked value is the one used')
})

// An audit: with Redis registered and queue.durable: false (or store: 'memory'), the startup line told
// the user to register @fastify/redis, which they had done. Failed before.
test('the in-process queue\'s startup line names what keeps it in process', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  for (const [options, hint] of [
    [{ queue: { durable: false } }, /queue\.durable: false/],
    [{ store: 'memory' }, /register @fastify\/redis \(with the default store\)/]
  ] as const) {
    const logs = captureLogs('info')
    const app = Fastify({ logger: logs.logger })
    t.teardown(() => app.close())
    await app.register(fastifyRedis, { url: redis.url })
    await app.register(wechatPush, { ...base, ...options } as never)
    await app.ready()
    const line = logs.parsed().find((entry) => entry.queue === 'memory')
    t.match(line?.msg, hint, JSON.stringify(options))
    t.match(line?.msg, /not durable/)
  }
})
