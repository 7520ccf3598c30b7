import { assertFields, assertOptionalBoolean } from './args.js'
import type { FieldNames } from './args.js'
import { SimulatorClock } from './clock.js'
import { CreditBook } from './context.js'
import type { SimContext } from './context.js'
import { FaultQueue } from './faults.js'
import { PUSH_RETRY_DELAY_MS, PUSH_TIMEOUT_MS } from './push-delivery.js'
import { assertTemplate, copyTemplate, DEMO_TEMPLATES } from './templates.js'
import { DEFAULT_SEND_QUOTA, QuotaBook } from './quota.js'
import { TokenIssuer } from './tokens.js'
import { MAX_WAIT_MS, SIM_ENDPOINTS } from './types.js'
import { KEYWORD_LIMITS } from '../delivery/keywords.js'
import type { SimEndpoint, SimulatorOptions } from './types.js'

/** First msgid handed out: 19 digits, above 2^53, so clients must parse it without rounding. */
export const FIRST_MSGID = 2100000000000000001n

const OPTIONS: FieldNames<SimulatorOptions> = {
  appId: true,
  appSecret: true,
  clock: true,
  latencyMs: true,
  tokenTtlSeconds: true,
  templates: true,
  openids: true,
  pages: true,
  returnMsgid: true,
  requireCredits: true,
  addTemplateEncoding: true,
  shortThingMax: true,
  sendQuota: true,
  firstMsgid: true,
  pushTimeoutMs: true,
  pushRetryDelayMs: true,
  logger: true
}

/**
 * Validates `createSimulator`'s options (a TypeError naming the bad one: an unknown or misspelt option
 * and a flag that is not a boolean included, since `requireCredits: 'false'` would turn credits on) and
 * builds the shared state (internal).
 */
export function buildContext (o: SimulatorOptions, abort: AbortController): SimContext & { abort: AbortController } {
  assertFields(o, OPTIONS, 'createSimulator', 'options', 'option')
  for (const flag of ['returnMsgid', 'requireCredits', 'logger'] as const) assertOptionalBoolean(o[flag], 'createSimulator', flag)
  const appId = assertString(o.appId ?? 'wx0000000000000000', 'appId')
  const appSecret = assertString(o.appSecret ?? 'simulator-secret-0000000000000000', 'appSecret')
  const ttl = o.tokenTtlSeconds ?? 7200
  if (!Number.isInteger(ttl) || ttl < 1) throw new TypeError('createSimulator: tokenTtlSeconds must be an integer >= 1')
  const templates = o.templates ?? DEMO_TEMPLATES
  if (!Array.isArray(templates)) throw new TypeError('createSimulator: templates must be an array')
  templates.forEach(assertTemplate)
  if (o.openids !== undefined && (!Array.isArray(o.openids) || !o.openids.every((id) => typeof id === 'string'))) {
    throw new TypeError('createSimulator: openids must be an array of strings')
  }
  if (o.pages !== undefined && (!Array.isArray(o.pages) || !o.pages.every((p) => typeof p === 'string' && p !== '' && !p.includes('?')))) {
    throw new TypeError('createSimulator: pages must be an array of page paths (non-empty strings without a query)')
  }
  const addTemplateEncoding = o.addTemplateEncoding ?? 'both'
  if (!['form', 'json', 'both'].includes(addTemplateEncoding)) throw new TypeError('createSimulator: addTemplateEncoding must be \'form\', \'json\' or \'both\'')
  const shortThingMax = o.shortThingMax ?? KEYWORD_LIMITS.short_thing
  if (!Number.isInteger(shortThingMax) || shortThingMax < 1 || shortThingMax > 1000) throw new TypeError('createSimulator: shortThingMax must be an integer from 1 to 1000')
  if (o.clock !== undefined && typeof (o.clock as { now?: unknown } | null)?.now !== 'function') {
    throw new TypeError('createSimulator: clock must have a now() method returning epoch milliseconds')
  }
  const clock = o.clock instanceof SimulatorClock ? o.clock : new SimulatorClock(o.clock ?? Date.now())
  const sendQuota = o.sendQuota ?? DEFAULT_SEND_QUOTA
  if (!Number.isInteger(sendQuota) || sendQuota < 0) throw new TypeError('createSimulator: sendQuota must be an integer >= 0 (subscribe/send calls a day)')
  return {
    appId,
    appSecret,
    clock,
    tokens: new TokenIssuer(clock, ttl),
    quota: new QuotaBook(clock, sendQuota),
    faults: new FaultQueue(),
    credits: new CreditBook(),
    templates: new Map(templates.map((t) => [t.priTmplId, copyTemplate(t)])),
    counters: Object.fromEntries(SIM_ENDPOINTS.map((name) => [name, 0])) as Record<SimEndpoint, number>,
    requests: [],
    accepted: [],
    openids: o.openids === undefined ? undefined : new Set(o.openids),
    pages: o.pages === undefined ? undefined : new Set(o.pages),
    returnMsgid: o.returnMsgid ?? true,
    requireCredits: o.requireCredits ?? false,
    addTemplateEncoding,
    shortThingMax,
    closing: abort.signal,
    abort,
    latencyMs: assertLatency(o.latencyMs ?? 0, 'createSimulator: latencyMs'),
    pushTiming: {
      timeoutMs: assertPositive(o.pushTimeoutMs ?? PUSH_TIMEOUT_MS, 'pushTimeoutMs'),
      retryDelayMs: assertLatency(o.pushRetryDelayMs ?? PUSH_RETRY_DELAY_MS, 'createSimulator: pushRetryDelayMs')
    },
    nextMsgid: firstMsgid(o.firstMsgid)
  }
}

/** WeChat's msgids are 64-bit: 1 to 19 digits, at most 2^63 - 1 with room for the sends after it. */
function firstMsgid (value: unknown): bigint {
  if (value === undefined) return FIRST_MSGID
  const text = typeof value === 'bigint' ? value.toString() : value
  if (typeof text !== 'string' || !/^[1-9]\d{0,18}$/.test(text) || BigInt(text) > 2n ** 63n - 2n ** 32n) {
    throw new TypeError('createSimulator: firstMsgid must be a positive integer of at most 19 digits (a bigint or a decimal string), below 2^63 - 2^32')
  }
  return BigInt(text)
}

function assertString (value: unknown, name: string): string {
  if (typeof value !== 'string' || value === '') throw new TypeError(`createSimulator: ${name} must be a non-empty string`)
  return value
}

/**
 * A wait in ms a timer can keep (0 to 2^31 - 1).
 * @param name the argument as the message names it, e.g. `'setLatency: ms'`
 */
export function assertLatency (ms: number, name: string): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_WAIT_MS) throw new TypeError(`${name} must be a number from 0 to ${MAX_WAIT_MS} (ms)`)
  return ms
}

function assertPositive (ms: number, name: string): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0 || ms > MAX_WAIT_MS) throw new TypeError(`createSimulator: ${name} must be a number above 0, at most ${MAX_WAIT_MS} (ms)`)
  return ms
}
