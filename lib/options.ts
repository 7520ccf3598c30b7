import { Value } from '@sinclair/typebox/value'
import { thrownText, WechatOptionsError } from './errors.js'
import { NESTED_SCHEMAS, OptionsSchema, PLAIN_PATH } from './options-schema.js'
import type { OptionsInput } from './options-schema.js'

export const DEFAULT_BASE_URLS = ['https://api.weixin.qq.com', 'https://api2.weixin.qq.com']

export interface Clock { now(): number }
export const systemClock: Clock = { now: () => Date.now() }

export type HookOption = ((...args: any[]) => unknown) | ((...args: any[]) => unknown)[]

/** Options after defaults: what the parts are built from. Durations are in ms here. */
export interface ResolvedOptions {
  appId: string
  appSecret: string
  baseUrls: string[]
  tokenEndpoint: 'stable' | 'classic'
  refreshAheadMs: number
  refreshIntervalMs: number
  store: 'auto' | 'redis' | 'memory'
  redisNamespace?: string
  keyPrefix: string
  timeout: number
  retry: { attempts: number, minDelay: number, maxDelay: number }
  defaults: { miniprogramState?: 'developer' | 'trial' | 'formal', lang?: 'zh_CN' | 'en_US' | 'zh_HK' | 'zh_TW', page?: string }
  validation: 'strict' | 'truncate' | 'off'
  queue: false | { concurrency: number, limiter?: { max: number, duration: number }, attempts: number, durable?: boolean, replicas?: { count: number, timeoutMs: number } }
  routes: false | { prefix: string, onRequest?: HookOption, preHandler?: HookOption, dashboard: boolean, unprotected: boolean }
  push: false | { path: string, token: string, encodingAESKey?: string, previousEncodingAESKey?: string, mode: 'plaintext' | 'compatible' | 'safe', bodyLimit: number, replayWindowMs: number }
  credits: 'off' | 'track' | 'enforce'
  /** the account's template list: cached `ttlSeconds` in the store, sends validated against it when `validate` */
  templates: false | { ttlSeconds: number, validate: boolean }
  namespace?: string
  retentionSeconds: number
  clock: Clock
  /** fastify.register's `logLevel`: the level of the plugin's logger */
  logLevel?: string
}

function fail (message: string): never {
  throw new WechatOptionsError(message)
}

/**
 * Validate and normalise the registration options synchronously (STYLE.md rule 2): the first problem
 * found fails `ready()` with FST_WECHAT_OPTIONS naming the option. Values are never echoed back for
 * secret options.
 */
export function resolveOptions (given: unknown): ResolvedOptions {
  const raw = readOnce(given)
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('options must be an object')
  const { prefix, logLevel } = registerKeys(raw as Record<string, unknown>)
  const input = stripFastifyKeys(raw as Record<string, unknown>)
  if (input.appId === undefined) fail('appId is required (the mini program AppID)')
  if (input.appSecret === undefined) fail('appSecret is required (the mini program AppSecret)')
  for (const [name, schema] of Object.entries(NESTED_SCHEMAS)) {
    const value = input[name]
    if (value === undefined || value === false) continue
    // (a Date, a boxed number or another class instance has no own keys: it read as an empty object)
    if (value === null || typeof value !== 'object' || Array.isArray(value) || !isPlainObject(value)) fail(`${name} must be ${name === 'retry' || name === 'defaults' ? 'an object' : 'false or an object'} (got ${describeValue(value)})`)
    const nested = Value.Errors(schema, value).First()
    if (nested) fail(describeSchemaError(`/${name}${nested.path}`, nested.message, nested.value))
  }
  const first = Value.Errors(OptionsSchema, input).First()
  if (first) fail(describeSchemaError(first.path, first.message, first.value))
  const o = input as OptionsInput

  const baseUrls = (o.baseUrl === undefined ? DEFAULT_BASE_URLS : Array.isArray(o.baseUrl) ? o.baseUrl : [o.baseUrl]).map(checkBaseUrl)
  // (fail-over would call the same host again, as if it were another)
  const repeated = baseUrls.find((url, i) => baseUrls.indexOf(url) !== i)
  if (repeated !== undefined) fail(`baseUrl lists ${repeated} twice`)
  const retry = { attempts: o.retry?.attempts ?? 3, minDelay: o.retry?.minDelay ?? 200, maxDelay: o.retry?.maxDelay ?? 5000 }
  if (retry.maxDelay < retry.minDelay) fail(`retry.maxDelay (${retry.maxDelay}) must be >= retry.minDelay (${retry.minDelay})`)
  const refreshAheadMs = (o.refreshAhead ?? 300) * 1000
  if (o.clock !== undefined) checkClock(o.clock)
  if (o.store === 'memory' && o.redisNamespace !== undefined) fail('redisNamespace makes no sense with store: \'memory\'')

  return {
    appId: checkAppId(o.appId),
    appSecret: o.appSecret,
    baseUrls,
    tokenEndpoint: o.tokenEndpoint ?? 'stable',
    refreshAheadMs,
    refreshIntervalMs: (o.refreshInterval ?? 30) * 1000,
    store: o.store ?? 'auto',
    redisNamespace: o.redisNamespace,
    keyPrefix: o.keyPrefix ?? 'wechat:',
    timeout: o.timeout ?? 5000,
    retry,
    defaults: { ...o.defaults },
    validation: o.validation ?? 'strict',
    queue: resolveQueue(o.queue),
    routes: resolveRoutes(o.routes, prefix),
    push: resolvePush(o.push, prefix),
    credits: o.credits ?? (o.push ? 'track' : 'off'),
    templates: o.templates === false ? false : { ttlSeconds: o.templates?.ttl ?? 3600, validate: o.templates?.validate ?? true },
    namespace: o.namespace,
    retentionSeconds: o.retention ?? 7 * 86_400,
    clock: (o.clock as Clock | undefined) ?? systemClock,
    ...(logLevel === undefined ? {} : { logLevel })
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/**
 * fastify.register's own `prefix` and `logLevel`, which Fastify applies only to plugins with a context
 * of their own (this one has none: its decorators are the app's). So the plugin applies them: the
 * prefix goes before `routes.prefix` and `push.path`, the level is its logger's.
 */
function registerKeys (raw: Record<string, unknown>): { prefix: string, logLevel?: string } {
  const { prefix = '', logLevel } = raw
  if (typeof prefix !== 'string' || (prefix !== '' && !new RegExp(PLAIN_PATH).test(prefix))) fail(`prefix must be a plain path starting with '/', without '*', ':', '?', '#', '%', spaces or '.' and '..' segments (got ${safeJson(prefix)})`)
  if (logLevel !== undefined && !LOG_LEVELS.includes(logLevel as string)) fail(`logLevel must be one of ${LOG_LEVELS.join(', ')} (got ${safeJson(logLevel)})`)
  return { prefix: prefix.replace(/\/+$/, ''), ...(logLevel === undefined ? {} : { logLevel: logLevel as string }) }
}

const FASTIFY_REGISTER_KEYS = ['prefix', 'logLevel', 'logSerializers']

/** fastify.register passes its own keys (prefix, logLevel...) inside the options object. */
/**
 * The options as plain data, each value read once: validation and use then see the same values (a
 * getter could answer differently each time), and options that cannot be read (a getter or a Proxy
 * trap that throws, a revoked Proxy) fail with FST_WECHAT_OPTIONS, not with what they threw. Plain
 * objects and arrays are copied (three levels: queue.limiter, routes.onRequest's array); anything
 * else (functions, class instances, the clock) is kept as it is.
 */
function readOnce (value: unknown, depth = 0): unknown {
  try {
    if (depth > 3 || value === null || typeof value !== 'object') return value
    if (Array.isArray(value)) return value.map((item: unknown) => readOnce(item, depth + 1))
    const proto: unknown = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) return value
    const copy: Record<string, unknown> = {}
    // (defineProperty: a key '__proto__' stays an own key, for validation to refuse as unknown)
    for (const key of Object.keys(value)) {
      const item = (value as Record<string, unknown>)[key]
      // the clock is the caller's object (a test's fake clock keeps its state in it), read once, not copied
      const read = depth === 0 && key === 'clock' ? item : readOnce(item, depth + 1)
      Object.defineProperty(copy, key, { value: read, enumerable: true, writable: true, configurable: true })
    }
    return copy
  } catch (err) {
    if (err instanceof WechatOptionsError) throw err
    return fail(`options could not be read (${thrownText(err)})`)
  }
}

/** Not a built-in's instance (a Date, a boxed number, a Map... read as an empty object); a class of the app's with its fields is fine. */
function isPlainObject (value: object): boolean {
  return Object.prototype.toString.call(value) === '[object Object]'
}

function describeValue (value: unknown): string {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && !isPlainObject(value)) return `an instance of ${(value as { constructor?: { name?: string } }).constructor?.name ?? Object.prototype.toString.call(value).slice(8, -1)}`
  return safeJson(value)
}

/** The largest time a Date holds (ECMA-262: ±8.64e15 ms around the epoch). */
const MAX_DATE_MS = 8.64e15

/** A clock is asked once now: a now() that throws or is no time (NaN) would fail every later call. */
function checkClock (clock: unknown): void {
  let now: unknown
  try {
    if (clock === null || typeof (clock as Clock).now !== 'function') fail('clock must be an object with a now() method')
    now = (clock as Clock).now()
  } catch (err) {
    if (err instanceof WechatOptionsError) throw err
    fail(`clock.now() threw (${thrownText(err)})`)
  }
  // (beyond 8.64e15 ms a Date is invalid: every record's timestamp would throw, sends included)
  if (typeof now !== 'number' || !Number.isFinite(now) || now < 0 || now > MAX_DATE_MS) fail(`clock.now() must return a time in ms since the epoch (got ${safeJson(now)})`)
}

function stripFastifyKeys (raw: Record<string, unknown>): Record<string, unknown> {
  const rest = { ...raw }
  for (const key of FASTIFY_REGISTER_KEYS) delete rest[key]
  return rest
}

function describeSchemaError (path: string, message: string, value: unknown): string {
  const name = path.replace(/^\//, '').replace(/\//g, '.') || 'options'
  const top = name.split('.')[0]
  if (message.startsWith('Unexpected property')) return `${name} is not a known option`
  const secret = top === 'appSecret' || name === 'push.token' || name.endsWith('AESKey')
  const shown = secret || typeof value === 'function' ? '' : ` (got ${safeJson(value)})`
  // (a pattern's regular expression says nothing to a reader: its rule in words)
  const rule = message.startsWith('Expected string to match') ? PATTERN_RULES[name] : undefined
  return `${name}: ${rule ?? message}${shown}`
}

/** The options-schema.ts patterns, in words. */
const PATTERN_RULES: Record<string, string> = {
  appSecret: 'must be printable ASCII without spaces (as the mini program console shows it)',
  'push.token': 'must be printable ASCII without spaces (the Token set in the console)',
  keyPrefix: 'must not contain braces, whitespace or control characters',
  namespace: 'must start with a letter, digit, _ or $ and hold only those, . and -',
  'routes.prefix': 'must be a plain path: starting with /, without *, :, ?, #, % or whitespace, and no . or .. segment',
  'push.path': 'must be a plain path: starting with /, without *, :, ?, #, % or whitespace, and no . or .. segment'
}

function safeJson (value: unknown): string {
  // (JSON writes NaN and Infinity as null, which is not what was passed)
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value)
  try {
    const text = JSON.stringify(value)
    return text === undefined ? String(value) : text.length > 80 ? `${text.slice(0, 77)}...` : text
  } catch {
    return typeof value
  }
}

function checkAppId (appId: string): string {
  // AppIDs are `wx` + 16 hex in practice; we only refuse what could break keys or URLs.
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(appId)) fail('appId must be 1-64 letters, digits, _ or - (a mini program AppID looks like wx0123456789abcdef)')
  return appId
}

export function checkBaseUrl (url: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return fail(`baseUrl must be an absolute http(s) URL (got ${safeJson(url)})`)
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') fail(`baseUrl must use http or https (got ${safeJson(url)})`)
  // The value as given, but never its credentials or query (they may hold a secret).
  if (parsed.search || parsed.hash || parsed.username || parsed.password) fail(`baseUrl must be an origin, or an origin and a path, without query, fragment or credentials (got ${safeJson(`${parsed.origin}${parsed.pathname}`)}${parsed.search ? ' and a query' : ''}${parsed.hash ? ' and a fragment' : ''}${parsed.username || parsed.password ? ' and credentials' : ''})`)
  // A path is a prefix every call goes under (a proxy at https://egress.example.com/wechat/, a test
  // WeChat mounted under a path). WeChat's own paths start at /cgi-bin or /wxaapi: one of them in
  // baseUrl is a mistake that would double it in every call.
  const path = parsed.pathname.replace(/\/+$/, '')
  const own = /\/(?:cgi-bin|wxaapi)(?:\/|$)/i.exec(path)
  if (own !== null) fail(`baseUrl must end before WeChat's own path (/cgi-bin, /wxaapi): got ${safeJson(`${parsed.origin}${parsed.pathname}`)}, give ${safeJson(`${parsed.origin}${path.slice(0, own.index)}`)}`)
  return parsed.origin + path
}

function isHook (value: unknown): boolean {
  return typeof value === 'function' || (Array.isArray(value) && value.length > 0 && value.every((h) => typeof h === 'function'))
}

function resolveQueue (queue: OptionsInput['queue']): ResolvedOptions['queue'] {
  if (queue === false) return false
  if (queue?.replicaTimeout !== undefined && queue.replicas === undefined) fail('queue.replicaTimeout needs queue.replicas (how many replicas must confirm an enqueue)')
  const replicas = queue?.replicas === undefined ? undefined : { count: queue.replicas, timeoutMs: queue.replicaTimeout ?? 1000 }
  return { concurrency: queue?.concurrency ?? 8, limiter: queue?.limiter, attempts: queue?.attempts ?? 8, durable: queue?.durable, replicas }
}

function resolveRoutes (routes: OptionsInput['routes'], registerPrefix: string): ResolvedOptions['routes'] {
  if (routes === undefined || routes === false) return false
  for (const name of ['onRequest', 'preHandler'] as const) {
    if (routes[name] !== undefined && !isHook(routes[name])) fail(`routes.${name} must be a hook function or a non-empty array of them`)
  }
  const guarded = routes.onRequest !== undefined || routes.preHandler !== undefined
  if (!guarded && routes.unprotected !== true) {
    fail('routes needs an auth hook (routes.onRequest or routes.preHandler) so that strangers cannot send messages; set routes.unprotected: true to expose them without one')
  }
  return {
    prefix: registerPrefix + (routes.prefix ?? '/wechat').replace(/\/+$/, ''),
    onRequest: routes.onRequest as HookOption | undefined,
    preHandler: routes.preHandler as HookOption | undefined,
    dashboard: routes.dashboard ?? true,
    unprotected: routes.unprotected ?? false
  }
}

const AES_KEY = /^[A-Za-z0-9]{43}$/
export const PUSH_BODY_LIMIT = 32 * 1024

function resolvePush (push: OptionsInput['push'], registerPrefix: string): ResolvedOptions['push'] {
  if (push === undefined || push === false) return false
  for (const name of ['encodingAESKey', 'previousEncodingAESKey'] as const) {
    if (push[name] !== undefined && !AES_KEY.test(push[name])) fail(`push.${name} must be the 43-character EncodingAESKey from the MP console`)
  }
  const mode = push.mode ?? (push.encodingAESKey ? 'safe' : 'plaintext')
  if (mode !== 'plaintext' && push.encodingAESKey === undefined) fail(`push.encodingAESKey is required for push.mode '${mode}'`)
  if (push.previousEncodingAESKey !== undefined && push.encodingAESKey === undefined) fail('push.previousEncodingAESKey needs push.encodingAESKey')
  return {
    path: registerPrefix + (push.path ?? '/wechat/push'),
    token: push.token,
    encodingAESKey: push.encodingAESKey,
    previousEncodingAESKey: push.previousEncodingAESKey,
    mode,
    // Real pushes are under 2 KB (compatible mode about 5 KB, §6.1): 32 KiB leaves room for larger
    // message types while bounding what one signed request can make us read and parse.
    bodyLimit: push.bodyLimit ?? PUSH_BODY_LIMIT,
    replayWindowMs: (push.replayWindow ?? 300) * 1000
  }
}
