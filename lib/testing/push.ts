import { randomInt } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Agent, request as httpRequest } from 'undici'
import { aesKeyFromEncodingAESKey } from '../push/crypto.js'
import { buildEncryptedEnvelope, buildPushBody } from '../push/envelope.js'
import { pushSignature } from '../push/signature.js'
import type { SimContext } from './context.js'
import { bodyText, parseObject } from './request.js'
import type { SimAcceptedMessage } from './types.js'

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
  /** `timestamp` query parameter, Unix seconds; default the simulator clock. */
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

/** The app's answer to a push. */
export interface SimPushResult {
  /** HTTP status; 0 when the push could not be delivered (background pushes only). */
  statusCode: number
  body: string
}

/** One entry of `WechatSimulator.pushes`. */
export interface SimPushRecord extends SimPushResult {
  /** The pushed event's `Event`. */
  event: string | undefined
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

export const DEFAULT_TO_USER_NAME = 'gh_000000000000'
const SEND_URL = '/cgi-bin/message/subscribe/send'

/**
 * Build a push exactly as WeChat sends it (§6.3): plaintext body + `signature`, or the encrypted
 * envelope + `encrypt_type=aes` + `msg_signature` (compatible mode keeps the plaintext fields too).
 * WeChat may add parameters such as `openid`; this does, so apps are tested to ignore them.
 */
export function buildSimPush (event: object, options: SimPushOptions, appId: string, nowMs: number): SimPushRequest {
  const token = options.token
  if (typeof token !== 'string' || token === '') throw new TypeError('sim.push: token is required (in the options or in pushConfig)')
  const mode = options.mode ?? (options.encodingAESKey === undefined ? 'plaintext' : 'safe')
  const format = options.format ?? 'xml'
  const timestamp = String(options.timestamp ?? Math.floor(nowMs / 1000))
  const nonce = options.nonce ?? String(randomInt(1_000_000_000, 10_000_000_000))
  let body: string
  let query: Record<string, string>
  if (mode === 'plaintext') {
    body = buildPushBody(event, { format })
    query = { signature: pushSignature([token, timestamp, nonce]), timestamp, nonce }
  } else {
    if (options.encodingAESKey === undefined) throw new TypeError(`sim.push: mode '${mode}' needs encodingAESKey`)
    const key = aesKeyFromEncodingAESKey(options.encodingAESKey)
    const envelope = buildEncryptedEnvelope(event, { format, token, key, appId: options.appId ?? appId, timestamp, nonce, compatible: mode === 'compatible' })
    body = envelope.body
    query = { ...envelope.query }
  }
  const openid = (event as { FromUserName?: unknown }).FromUserName
  if (typeof openid === 'string') query.openid = openid
  return { url: `${options.path ?? '/wechat/push'}?${new URLSearchParams(query).toString()}`, body, contentType: format === 'json' ? 'application/json' : 'text/xml' }
}

function defined<T extends object> (value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** The simulator's push side (internal): WeChat → app. */
export class SimPusher {
  config: SimPushConfig | undefined
  readonly records: SimPushRecord[] = []
  readonly #ctx: SimContext
  readonly #agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 })
  readonly #inFlight = new Set<Promise<unknown>>()
  // Last CreateTime per (user, event, templates): the frozen simulator clock must not make two
  // pop-ups look like one WeChat retry to the app's dedupe (§6.5).
  readonly #lastCreateTime = new Map<string, number>()

  constructor (ctx: SimContext) {
    this.#ctx = ctx
  }

  /** POST `event` to `appUrl` (default: the configured URL) and return the app's answer. */
  async push (appUrl: string | undefined, event: object, options: SimPushOptions = {}): Promise<SimPushResult> {
    const { url: configUrl, sentEvents: _s, toUserName, ...configured } = this.config ?? { url: undefined }
    const base = appUrl ?? configUrl
    if (base === undefined) throw new TypeError('sim.push: no app URL (pass one or call pushConfig first)')
    const now = this.#ctx.clock.now()
    const full = { ToUserName: toUserName ?? DEFAULT_TO_USER_NAME, CreateTime: Math.floor(now / 1000), MsgType: 'event', ...event }
    const built = buildSimPush(full, { ...defined(configured), ...defined(options) }, this.#ctx.appId, now)
    const response = await httpRequest(base.replace(/\/+$/, '') + built.url, {
      method: 'POST',
      headers: { 'content-type': built.contentType },
      body: built.body,
      dispatcher: this.#agent,
      signal: this.#ctx.closing
    })
    const result = { statusCode: response.statusCode, body: await response.body.text() }
    this.records.push({ event: (full as { Event?: string }).Event, ...result })
    return result
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
    // WeChat records the subscription before it pushes, so a send racing the push already finds the credit.
    for (const item of items) if (item.status === 'accept') this.#ctx.credits.grant(item.openid, item.templateId, 1)
    const results: SimPushResult[] = []
    for (const [openid, list] of byUser) {
      const event = 'subscribe_msg_popup_event'
      const List = list.map((item) => ({ TemplateId: item.templateId, SubscribeStatusString: item.status, PopupScene: 0 }))
      const CreateTime = this.#createTime(`${openid}\u0000${event}\u0000${List.map((i) => i.TemplateId).sort().join(',')}`)
      results.push(await this.push(appUrl, { FromUserName: openid, CreateTime, Event: event, List }))
    }
    return results
  }

  /** Fire-and-forget `subscribe_msg_sent_event` for an accepted send (§7.3); errors are recorded, not thrown. */
  sent (message: SimAcceptedMessage): void {
    if (this.config === undefined || this.config.sentEvents === false) return
    const List = [{ TemplateId: message.template_id, MsgID: message.msgid, ErrorCode: 0, ErrorStatus: 'success' }]
    const run = this.push(undefined, { FromUserName: message.touser, Event: 'subscribe_msg_sent_event', List })
      .catch(() => { this.records.push({ event: 'subscribe_msg_sent_event', statusCode: 0, body: '' }) })
    this.#inFlight.add(run)
    run.finally(() => this.#inFlight.delete(run))
  }

  /** Resolves when every background push started so far has been answered (or failed). */
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
    await this.#agent.close()
  }

  #createTime (key: string): number {
    const now = Math.floor(this.#ctx.clock.now() / 1000)
    const last = this.#lastCreateTime.get(key)
    const time = last !== undefined && last >= now ? last + 1 : now
    this.#lastCreateTime.set(key, time)
    return time
  }
}

/**
 * Pushes a sent event for each send the simulator accepted, once its answer went out (§7.3: the
 * result arrives asynchronously after `subscribe/send`), or once its connection was dropped by a
 * `processed` fault: WeChat pushes the result of a message it accepted whether or not its answer
 * reached the caller. An accepted message is matched to its request by position (the accepted log's
 * length before the handler) and by touser + template_id; each message is claimed once, so every
 * accepted send gets exactly one sent event.
 */
export function watchSends (app: FastifyInstance, ctx: SimContext, pusher: SimPusher): void {
  const claimed = new WeakSet<SimAcceptedMessage>()
  app.addHook('preHandler', async (request, reply) => {
    if (request.routeOptions.url !== SEND_URL) return
    const from = ctx.accepted.length
    // 'close' fires after the answer was written and also when the socket was destroyed (a drop),
    // where Fastify's onResponse does not run.
    reply.raw.once('close', () => {
      const sent = parseObject(bodyText(request))
      const message = ctx.accepted.slice(from).find((m) => !claimed.has(m) && m.touser === sent?.touser && m.template_id === sent?.template_id)
      if (message === undefined) return
      claimed.add(message)
      pusher.sent(message)
    })
  })
}
