import type { AddressInfo } from 'node:net'
import { setMaxListeners } from 'node:events'
import type { FastifyInstance } from 'fastify'
import type { SimulatorClock } from './clock.js'
import type { SimContext } from './context.js'
import type { FaultTarget } from './faults.js'
import { SimPusher } from './push.js'
import { assertPushConfig } from './push-config.js'
import type { SimChangeItem, SimPopupItem, SimPushConfig, SimPushOptions, SimPushRecord, SimPushResult } from './push.js'
import { tokenRoutes } from './routes-token.js'
import { assertLatency, buildContext } from './setup.js'
import { assertTemplate, copyTemplate } from './templates.js'
import { sendRoutes } from './routes-send.js'
import { buildServer } from './server.js'
import { templateRoutes } from './routes-templates.js'
import { quotaRoutes } from './routes-quota.js'
import type { TokenKind } from './tokens.js'
import type { SimUrlCheckOptions, SimUrlCheckResult } from './url-check.js'
import { SIM_ENDPOINTS } from './types.js'
import type { SimAcceptedMessage, SimEndpoint, SimFault, SimRequestRecord, SimTemplate, SimTokenFetches, SimulatorOptions } from './types.js'

export { FIRST_MSGID } from './setup.js'

/**
 * A WeChat API simulator: a real Fastify HTTP server on 127.0.0.1 that behaves like
 * `api.weixin.qq.com` for tokens, subscribe send and template management, faults included.
 * Create it with `createSimulator()`; point the client's base URL at `url`; `close()` it after the test.
 */
export class WechatSimulator {
  /** Base URL to use instead of `https://api.weixin.qq.com`, e.g. `'http://127.0.0.1:41234'`. */
  readonly url: string
  /** The AppID the simulator accepts. */
  readonly appId: string
  /** The AppSecret the simulator accepts. */
  readonly appSecret: string
  /** The simulated clock (token lifetimes, force-refresh limits, record times). */
  readonly clock: SimulatorClock
  /** Requests received per endpoint, faulted ones included. */
  readonly counters: Record<SimEndpoint, number>
  /** Every answered request, in arrival order. */
  readonly requests: SimRequestRecord[]
  /** Every message `subscribe/send` accepted, in order. */
  readonly accepted: SimAcceptedMessage[]
  /** Every push attempt sent to the app (`push`, `popup`, sent events, retries included), with the app's answer. */
  readonly pushes: SimPushRecord[]
  readonly #ctx: SimContext
  readonly #pusher: SimPusher
  readonly #app: FastifyInstance
  readonly #abort: AbortController
  readonly #initialLatency: number
  #closing: Promise<void> | undefined

  private constructor (app: FastifyInstance, ctx: SimContext, abort: AbortController, pusher: SimPusher) {
    this.#app = app
    this.#pusher = pusher
    this.pushes = pusher.records
    this.#ctx = ctx
    this.#abort = abort
    this.#initialLatency = ctx.latencyMs
    this.url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    this.appId = ctx.appId
    this.appSecret = ctx.appSecret
    this.clock = ctx.clock
    this.counters = ctx.counters
    this.requests = ctx.requests
    this.accepted = ctx.accepted
  }

  /**
   * Starts a simulator (use `createSimulator`, which calls this).
   * @throws TypeError on a bad option
   */
  static async start (options: SimulatorOptions = {}): Promise<WechatSimulator> {
    const closing = new AbortController()
    // every delayed answer waits on this signal: more than 10 at once is normal, not a listener leak
    setMaxListeners(0, closing.signal)
    const ctx = buildContext(options, closing)
    const app = buildServer(options.logger ?? false)
    const pusher = new SimPusher(ctx)
    tokenRoutes(app, ctx)
    sendRoutes(app, ctx, (message) => { pusher.sent(message) })
    templateRoutes(app, ctx)
    quotaRoutes(app, ctx)
    await app.listen({ host: '127.0.0.1', port: 0 })
    return new WechatSimulator(app, ctx, ctx.abort, pusher)
  }

  /** Current simulated time, epoch milliseconds (same as `clock.now()`). */
  now (): number {
    return this.#ctx.clock.now()
  }

  /**
   * Every token issued so far (classic and stable) expires now: business calls with them get 42001,
   * and the next normal `stable_token` call issues a new token.
   */
  expireTokens (): void {
    this.#ctx.tokens.expireAll()
  }

  /**
   * Every token issued so far becomes invalid now, as if superseded: business calls with them get 40001,
   * and the next normal `stable_token` call issues a new token.
   */
  invalidateTokens (): void {
    this.#ctx.tokens.invalidateAll()
  }

  /**
   * Queues a fault for the next `times` requests to `endpoint` (or to any endpoint with `'*'`). Faults are
   * used in order; an endpoint's own queue is used before the `'*'` queue. See `SimFault` for the fields.
   * @example sim.failNext('send', { errcode: -1 }, 2)
   * @example sim.failNext('stable_token', { httpStatus: 502 })
   * @example sim.failNext('*', { drop: true })
   */
  failNext (endpoint: FaultTarget, fault: SimFault, times = 1): void {
    this.#ctx.faults.add(endpoint, fault, times)
  }

  /** Faults still queued for `endpoint` (or `'*'`), or in total when left out. */
  pendingFaults (endpoint?: FaultTarget): number {
    return this.#ctx.faults.pending(endpoint)
  }

  /** Sets the wall-clock latency added to every answer, in milliseconds. */
  setLatency (ms: number): void {
    this.#ctx.latencyMs = assertLatency(ms, 'setLatency: ms')
  }

  /** How many NEW tokens were issued, per way of issuing (a stable call returning the same token is not counted). */
  tokenFetches (): SimTokenFetches {
    return this.#ctx.tokens.fetches()
  }

  /** The newest token of a kind (`'classic'` from `cgi-bin/token`, `'stable'` from `stable_token`), if any. */
  currentToken (kind: TokenKind): string | undefined {
    return this.#ctx.tokens.current(kind)
  }

  /**
   * Gives the user `n` (default 1) send credits for a one-time template, as `n` pop-up accepts would.
   * Any template id is taken, one the account does not have (yet) included: a test may grant before
   * `addTemplate`, and a send to an unknown id gets 40037 before credits are looked at.
   */
  grantCredit (openid: string, templateId: string, n = 1): void {
    if (typeof openid !== 'string' || openid === '') throw new TypeError('grantCredit: openid must be a non-empty string')
    if (typeof templateId !== 'string' || templateId === '') throw new TypeError('grantCredit: templateId must be a non-empty string')
    if (!Number.isInteger(n) || n < 1) throw new TypeError('grantCredit: n must be an integer >= 1')
    this.#ctx.credits.grant(openid, templateId, n)
  }

  /** Remaining send credits of the user for a template. */
  credits (openid: string, templateId: string): number {
    return this.#ctx.credits.count(openid, templateId)
  }

  /** Adds (or replaces, by `priTmplId`) a private template of the account. */
  addTemplate (template: SimTemplate): void {
    assertTemplate(template)
    this.#ctx.templates.set(template.priTmplId, copyTemplate(template))
  }

  /** Removes a private template; sends with its id then get 40037. */
  removeTemplate (id: string): void {
    this.#ctx.templates.delete(id)
  }

  /** The account's private templates (copies), as `gettemplate` lists them. */
  templates (): SimTemplate[] {
    return [...this.#ctx.templates.values()].map(copyTemplate)
  }

  /**
   * Pushes an event to the app as WeChat does (WECHAT.md §6.3–§6.4): signed, encrypted in safe and
   * compatible mode, XML or JSON. Missing ToUserName, CreateTime, MsgType are filled in; options left
   * out come from `pushConfig`. Like WeChat (§6.5) it waits 5 s per attempt and tries up to 3 times until
   * the app answers a 2xx with `success` or an empty body. Resolves with the last attempt's answer,
   * whatever its status (0: no answer). Sends the event as given: it changes no simulator state (use
   * `popup` or `change` for a user's action).
   * @example await sim.push(url, { FromUserName: openid, Event: 'subscribe_msg_change_event', List: [...] }, { token })
   */
  async push (appUrl: string | undefined, event: object, options?: SimPushOptions): Promise<SimPushResult> {
    return this.#pusher.push(appUrl, event, options)
  }

  /**
   * The URL check WeChat makes when the push URL is saved in the console (WECHAT.md §6.2): one GET with
   * `signature`, `timestamp`, `nonce` and `echostr` to the configured push URL (or `appUrl`), token and
   * path from `pushConfig` unless given. `ok` when the app answers a 2xx whose body is exactly the
   * echostr; no answer within 5 s is statusCode 0. Not retried (the console just fails the save).
   * @example const { ok } = await sim.checkPushUrl()
   */
  async checkPushUrl (appUrl?: string, options?: SimUrlCheckOptions): Promise<SimUrlCheckResult> {
    return this.#pusher.checkUrl(appUrl, options)
  }

  /**
   * The app's push configuration (the MP console's 消息推送配置); with it every accepted send is followed
   * by a `subscribe_msg_sent_event` push (unless `sentEvents: false`). `null` removes it.
   */
  pushConfig (config: SimPushConfig | null): void {
    if (config !== null) assertPushConfig(config)
    this.#pusher.config = config ?? undefined
  }

  /**
   * A subscribe pop-up outcome (§7.1): grants a credit per accept and zeroes the user's credits for
   * each rejected template, then pushes the popup event(s), one per user.
   */
  async popup (appUrlOrItems: string | SimPopupItem[] | undefined, items?: SimPopupItem[]): Promise<SimPushResult[]> {
    // (the URL given, or left out as `undefined` before the items, as push() and checkPushUrl() take it)
    return typeof appUrlOrItems === 'string' || appUrlOrItems === undefined ? this.#pusher.popup(appUrlOrItems, items ?? []) : this.#pusher.popup(undefined, appUrlOrItems)
  }

  /**
   * The user later set templates to reject (§7.2): zeroes those credits, so the next send gets 43101,
   * then pushes the `subscribe_msg_change_event`(s), one per user.
   * @example await sim.change([{ openid, templateId, status: 'reject' }])
   */
  async change (appUrlOrItems: string | SimChangeItem[] | undefined, items?: SimChangeItem[]): Promise<SimPushResult[]> {
    return typeof appUrlOrItems === 'string' || appUrlOrItems === undefined ? this.#pusher.change(appUrlOrItems, items ?? []) : this.#pusher.change(undefined, appUrlOrItems)
  }

  /** Resolves when every push started so far (sent events included) has been acknowledged or given up, retries included. */
  async pushesSettled (): Promise<void> {
    await this.#pusher.settled()
  }

  /**
   * Clears what tests accumulate: counters, the request, accepted and pushes logs, queued faults, tokens
   * (and the force-refresh budget), credits, the pop-up/sent-event CreateTime memory, and latency (back
   * to `latencyMs`). Kept as they are: `pushConfig`, the account's templates as they are now (added and
   * removed ones included), the clock's time, the createSimulator options, and the msgid sequence (msgids
   * keep increasing so they stay unique). Pushes already on their way (and their retries) are not cancelled.
   */
  reset (): void {
    const ctx = this.#ctx
    for (const name of SIM_ENDPOINTS) ctx.counters[name] = 0
    ctx.requests.length = 0
    ctx.accepted.length = 0
    ctx.faults.clear()
    ctx.tokens.reset()
    ctx.quota.reset()
    ctx.credits.clear()
    ctx.latencyMs = this.#initialLatency
    this.#pusher.reset()
  }

  /** Stops the server at once: pending delayed answers are dropped, open connections closed. Idempotent. */
  async close (): Promise<void> {
    this.#abort.abort()
    this.#closing ??= this.#pusher.close().then(() => this.#app.close())
    await this.#closing
  }
}

/**
 * Starts a WeChat simulator on `127.0.0.1` (random port).
 * @example
 * const sim = await createSimulator()
 * t.teardown(() => sim.close())
 * await app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url })
 */
export async function createSimulator (options?: SimulatorOptions): Promise<WechatSimulator> {
  return WechatSimulator.start(options)
}
