import type { SimContext } from './context.js'
import { isPlainObject } from './args.js'
import { buildSimPush, DEFAULT_TO_USER_NAME } from './push-request.js'
import { isReceipt, PushDelivery } from './push-delivery.js'
import { isPassiveReply } from './passive-reply.js'
import type { ReplyRules } from './passive-reply.js'
import type { AttemptResult } from './push-delivery.js'
import type { SimAcceptedMessage } from './types.js'
import { buildSimUrlCheck } from './url-check.js'
import type { SimUrlCheckOptions, SimUrlCheckResult } from './url-check.js'

/** The events of a user's own actions (§7.1, §7.2), ordered by CreateTime per user. */
const USER_ACTIONS = new Set<unknown>(['subscribe_msg_popup_event', 'subscribe_msg_change_event'])

/** Encryption mode of the push configuration (WECHAT.md §6.1). */
export type SimPushMode = 'plaintext' | 'compatible' | 'safe'
/** Data format of the push configuration (WECHAT.md §6.1). */
export type SimPushFormat = 'xml' | 'json'

/** How one push is signed, encrypted and addressed; unset fields come from `pushConfig`. */
export interface SimPushOptions {
  /** Default: `'safe'` with an `encodingAESKey`, else `'plaintext'`. */
  mode?: SimPushMode
  /** Default `'xml'` (the old mini-program default, §6.1). */
  format?: SimPushFormat
  /** The Token shared with the app (required here or in `pushConfig`). */
  token?: string
  /** The 43-character EncodingAESKey (required for `'safe'` and `'compatible'`). */
  encodingAESKey?: string
  /** Path of the app's push endpoint; default `'/wechat/push'`. */
  path?: string
  /** `timestamp` query parameter, Unix seconds (an integer); default the simulator clock. */
  timestamp?: number
  /** `nonce` query parameter; default 10 random digits. */
  nonce?: string
  /** Encrypt for this AppID instead of the simulator's (to test an app's appid check). */
  appId?: string
}

/** Where WeChat pushes events for this mini program (the MP console's 消息推送配置, §6.1). */
export interface SimPushConfig extends Omit<SimPushOptions, 'timestamp' | 'nonce' | 'appId'> {
  /** Base URL of the app, e.g. `http://127.0.0.1:3000`. */
  url: string
  token: string
  /** Push a `subscribe_msg_sent_event` after every accepted send (§7.3); default true. */
  sentEvents?: boolean
  /** The mini program's original id used as `ToUserName`; default `'gh_000000000000'`. */
  toUserName?: string
}

/** The app's answer to a push (to its last attempt, when it was retried). */
export interface SimPushResult {
  /** HTTP status; 0 when no answer came (timeout, connection refused or dropped, simulator closing). */
  statusCode: number
  body: string
}

/** One entry of `WechatSimulator.pushes`: one attempt of one push. */
export interface SimPushRecord extends SimPushResult {
  /** The pushed event's `Event`. */
  event: string | undefined
  /** 1 for the first attempt, 2 and 3 for WeChat's retries (WECHAT.md §6.5). */
  attempt: number
  /** Why there was no answer, when `statusCode` is 0. */
  error?: 'timeout' | 'connection' | 'closed'
}

/** A signed (and maybe encrypted) push, ready to POST or to `app.inject`. */
export interface SimPushRequest {
  /** Path plus query string. */
  url: string
  body: string
  contentType: string
}

/** One template's outcome in a subscribe pop-up (§7.1). */
export interface SimPopupItem {
  openid: string
  templateId: string
  status: 'accept' | 'reject'
}

/** One template the user set to reject later (§7.2: only rejections are pushed). */
export interface SimChangeItem {
  openid: string
  templateId: string
  /** Always `'reject'`; may be left out. */
  status?: 'reject'
}

function defined<T extends object> (value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

/**
 * The simulator's push side (internal): WeChat → app. Every push (`push`, `popup`, sent events) is
 * delivered as WeChat does it (WECHAT.md §6.5): cut off after 5 s, tried up to 3 times until the app
 * answers `success` or an empty body, every attempt logged in `records`.
 */
export class SimPusher {
  config: SimPushConfig | undefined
  readonly records: SimPushRecord[] = []
  readonly #ctx: SimContext
  readonly #delivery: PushDelivery
  readonly #inFlight = new Set<Promise<unknown>>()
  // Last CreateTime per user of pop-up and change events: a user's two actions under a frozen
  // simulator clock must not look like one WeChat retry to the app's dedupe (§6.5), nor come out of
  // order (an app orders a user's accept and reject by CreateTime: keyed per event as it was, a change
  // after two pop-ups got the first pop-up's second and its reject was read as older than the accepts).
  // (A real user cannot act twice in one second; sent events keep the clock's second, as WeChat's.)
  readonly #lastCreateTime = new Map<string, number>()

  constructor (ctx: SimContext) {
    this.#ctx = ctx
    this.#delivery = new PushDelivery(ctx.pushTiming, ctx.closing)
  }

  /**
   * POST `event` to `appUrl` (default: the configured URL), retried as WeChat retries; resolves with the
   * last attempt's answer. Each attempt is signed anew (fresh nonce unless one is given, timestamp from
   * the clock); the event itself, CreateTime included, is the same, so the app can dedupe it.
   */
  async push (appUrl: string | undefined, event: object, options: SimPushOptions = {}): Promise<SimPushResult> {
    const { url: configUrl, sentEvents: _s, toUserName, ...configured } = this.config ?? { url: undefined }
    const base = appUrl ?? configUrl
    if (base === undefined) throw new TypeError('sim.push: no app URL (pass one or call pushConfig first)')
    if (typeof base !== 'string') throw new TypeError('sim.push: appUrl must be a string')
    if (!isPlainObject(options)) throw new TypeError('sim.push: options must be an object')
    // (a string or null was sent as it was, or failed reading FromUserName: say what is wrong)
    if (!isPlainObject(event)) throw new TypeError('sim.push: event must be an object (the push\'s fields, e.g. { FromUserName, Event, List })')
    // In the order of WeChat's examples (§7): ToUserName, FromUserName, CreateTime, MsgType, Event, ...
    // (a key the event gives again keeps its place and takes the event's value)
    const from = (event as { FromUserName?: unknown }).FromUserName
    // (a user's pop-up or change event without a CreateTime of its own takes the user's next one, so a
    // user's actions keep their order; one given is used as it is and takes no number from the sequence)
    const own = event as { Event?: unknown, CreateTime?: unknown }
    const CreateTime = own.CreateTime === undefined && typeof from === 'string' && USER_ACTIONS.has(own.Event) ? this.#createTime(from) : Math.floor(this.#ctx.clock.now() / 1000)
    const full = { ToUserName: toUserName ?? DEFAULT_TO_USER_NAME, ...(from !== undefined ? { FromUserName: from } : {}), CreateTime, MsgType: 'event', ...event }
    const merged = { ...defined(configured), ...defined(options) }
    const build = (): SimPushRequest => {
      const built = buildSimPush(full, merged, this.#ctx.appId, this.#ctx.clock.now())
      return { ...built, url: base.replace(/\/+$/, '') + built.url }
    }
    build() // a push that cannot be signed throws here, before anything is sent
    const name = (full as { Event?: string }).Event
    const rules: ReplyRules = {
      token: merged.token as string,
      mode: merged.mode ?? (merged.encodingAESKey === undefined ? 'plaintext' : 'safe'),
      format: merged.format ?? 'xml',
      encodingAESKey: merged.encodingAESKey,
      appId: (options.appId as string | undefined) ?? this.#ctx.appId
    }
    // `success`, an empty body, or a passive reply in the push's format and mode (§6.5)
    const acknowledged = (result: AttemptResult): boolean => isReceipt(result) || (result.statusCode === 200 && isPassiveReply(result.body, rules))
    const run = this.#delivery.deliver(build, (result, attempt) => { this.records.push(record(name, result, attempt)) }, acknowledged)
    this.#track(run)
    const { statusCode, body } = await run
    return { statusCode, body }
  }

  /** The console's URL check (§6.2): one signed GET to the push URL; `ok` when it echoes the echostr. */
  async checkUrl (appUrl: string | undefined, options: SimUrlCheckOptions = {}): Promise<SimUrlCheckResult> {
    const base = appUrl ?? this.config?.url
    if (base === undefined) throw new TypeError('sim.checkPushUrl: no app URL (pass one or call pushConfig first)')
    if (typeof base !== 'string') throw new TypeError('sim.checkPushUrl: appUrl must be a string')
    if (!isPlainObject(options)) throw new TypeError('sim.checkPushUrl: options must be an object')
    const configured = defined({ token: this.config?.token, path: this.config?.path })
    const check = buildSimUrlCheck({ ...configured, ...defined(options) }, this.#ctx.clock.now())
    const run = this.#delivery.get(base.replace(/\/+$/, '') + check.url)
    this.#track(run)
    const { statusCode, body } = await run
    return { ok: statusCode >= 200 && statusCode < 300 && body === check.echostr, statusCode, body, echostr: check.echostr }
  }

  /** A pop-up outcome (§7.1): credits for accepts, then one popup event per user. */
  async popup (appUrl: string | undefined, items: SimPopupItem[]): Promise<SimPushResult[]> {
    if (this.config === undefined) throw new TypeError('sim.popup: call pushConfig first (the token and keys come from there)')
    if (!Array.isArray(items) || items.length === 0) throw new TypeError('sim.popup: items must be a non-empty array')
    const byUser = new Map<string, SimPopupItem[]>()
    for (const item of items) {
      if (typeof item?.openid !== 'string' || typeof item.templateId !== 'string' || (item.status !== 'accept' && item.status !== 'reject')) {
        throw new TypeError('sim.popup: each item needs openid, templateId and status accept|reject')
      }
      byUser.set(item.openid, [...(byUser.get(item.openid) ?? []), item])
    }
    for (const [openid, list] of byUser) {
      // wx.requestSubscribeMessage takes at most 3 tmplIds, so one pop-up's event lists at most 3 (WECHAT.md §7.1, §8)
      if (list.length > 3) throw new TypeError(`sim.popup: a pop-up asks at most 3 templates of one user (${list.length} for ${openid}): call popup once per pop-up`)
    }
    // WeChat records the subscription before it pushes, so a send racing the push already finds the
    // credit; a reject leaves no subscription at all (§2.3 43101: "unsubscribed/rejected").
    for (const item of items) {
      if (item.status === 'accept') this.#ctx.credits.grant(item.openid, item.templateId, 1)
      else this.#ctx.credits.revoke(item.openid, item.templateId)
    }
    const results: SimPushResult[] = []
    for (const [openid, list] of byUser) {
      const List = list.map((item) => ({ TemplateId: item.templateId, SubscribeStatusString: item.status, PopupScene: this.#wireNumber(0) }))
      results.push(await this.#userEvent(appUrl, openid, 'subscribe_msg_popup_event', List))
    }
    return results
  }

  /** A later rejection in the settings (§7.2): zeroes the credits, then one change event per user. */
  async change (appUrl: string | undefined, items: SimChangeItem[]): Promise<SimPushResult[]> {
    if (this.config === undefined) throw new TypeError('sim.change: call pushConfig first (the token and keys come from there)')
    if (!Array.isArray(items) || items.length === 0) throw new TypeError('sim.change: items must be a non-empty array')
    const byUser = new Map<string, SimChangeItem[]>()
    for (const item of items) {
      if (typeof item?.openid !== 'string' || typeof item.templateId !== 'string' || (item.status !== undefined && item.status !== 'reject')) {
        throw new TypeError('sim.change: each item needs openid and templateId; status can only be reject (§7.2)')
      }
      byUser.set(item.openid, [...(byUser.get(item.openid) ?? []), item])
    }
    for (const item of items) this.#ctx.credits.revoke(item.openid, item.templateId)
    const results: SimPushResult[] = []
    for (const [openid, list] of byUser) {
      const List = list.map((item) => ({ TemplateId: item.templateId, SubscribeStatusString: 'reject' }))
      results.push(await this.#userEvent(appUrl, openid, 'subscribe_msg_change_event', List))
    }
    return results
  }

  /** Fire-and-forget `subscribe_msg_sent_event` for an accepted send (§7.3); every attempt is recorded. */
  sent (message: SimAcceptedMessage): void {
    if (this.config === undefined || this.config.sentEvents === false) return
    const List = [{ TemplateId: message.template_id, MsgID: this.#wireNumber(BigInt(message.msgid)), ErrorCode: this.#wireNumber(0), ErrorStatus: 'success' }]
    // CreateTime is the clock's second, as WeChat's: two sends of one template to one user in the same
    // second give two events alike but for MsgID, which an app's dedupe must therefore include (§6.5).
    const event = { FromUserName: message.touser, CreateTime: Math.floor(this.#ctx.clock.now() / 1000), Event: 'subscribe_msg_sent_event', List }
    // pushConfig was validated, so building cannot throw; the catch only keeps a bug from crashing the run.
    this.push(undefined, event).catch(() => {})
  }

  /** Resolves when every push started so far, retries included, has been answered or given up. */
  async settled (): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight])
  }

  reset (): void {
    this.records.length = 0
    this.#lastCreateTime.clear()
  }

  /** After the simulator's abort signal fired: wait for the aborted pushes, then drop the connections. */
  async close (): Promise<void> {
    await this.settled()
    await this.#delivery.close()
  }

  /** Pushes one user's event; push() gives it the user's next CreateTime (see #lastCreateTime). */
  async #userEvent (appUrl: string | undefined, openid: string, event: string, List: Array<{ TemplateId: string }>): Promise<SimPushResult> {
    return this.push(appUrl, { FromUserName: openid, Event: event, List })
  }

  /**
   * A number of a built-in event as WECHAT.md's examples write it (§7.1, §7.3): a string in JSON
   * (`"PopupScene":"0"`, `"MsgID":"2100000000000000123"`), bare text in XML (`<MsgID>2100000000000000123</MsgID>`,
   * which a bigint gives: strings would go in CDATA). The format is the configured one: built-in
   * events are pushed with `pushConfig`'s options.
   */
  #wireNumber (value: number | bigint): number | bigint | string {
    return this.config?.format === 'json' ? String(value) : value
  }

  #track (run: Promise<unknown>): void {
    this.#inFlight.add(run)
    run.finally(() => this.#inFlight.delete(run)).catch(() => {})
  }

  #createTime (key: string): number {
    const now = Math.floor(this.#ctx.clock.now() / 1000)
    const last = this.#lastCreateTime.get(key)
    const time = last !== undefined && last >= now ? last + 1 : now
    this.#lastCreateTime.set(key, time)
    return time
  }
}

function record (event: string | undefined, result: AttemptResult, attempt: number): SimPushRecord {
  return { event, statusCode: result.statusCode, body: result.body, attempt, ...(result.error === undefined ? {} : { error: result.error }) }
}
