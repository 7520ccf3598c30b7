/**
 * Public types of the WeChat simulator (`fastify-wechat-push/testing`).
 * @module
 */

/** The longest wait a timer keeps (2^31 - 1 ms, about 24.8 days): Node cuts a longer one to 1 ms, so an answer meant to come "never" came at once. */
export const MAX_WAIT_MS = 2 ** 31 - 1

/** Anything with a `now()` in epoch milliseconds; `advance`/`set` are optional. */
export interface ClockLike {
  /** Current simulated time, epoch milliseconds. */
  now(): number
  /** Moves the clock forward by `ms` (optional). */
  advance?(ms: number): unknown
  /** Sets the clock to `ms` epoch milliseconds (optional). */
  set?(ms: number): unknown
}

/** Every endpoint the simulator serves, as counted in `counters` and `requests`. */
export const SIM_ENDPOINTS = [
  'token',
  'stable_token',
  'send',
  'gettemplate',
  'getcategory',
  'getpubtemplatetitles',
  'getpubtemplatekeywords',
  'addtemplate',
  'deltemplate',
  'quota_get',
  'clear_quota',
  'clear_quota_v2'
] as const

/** Name of one simulated WeChat endpoint. */
export type SimEndpoint = typeof SIM_ENDPOINTS[number]

/** A private (account) subscribe template, as `gettemplate` lists it (WECHAT.md §4.1). */
export interface SimTemplate {
  /** Template id used as `template_id` when sending. */
  priTmplId: string
  /** Title shown to the user. */
  title: string
  /** Layout with the keys, e.g. `'物品:{{thing1.DATA}}\n时间:{{time2.DATA}}\n'`. */
  content: string
  /** The layout filled with sample values; generated from `content` when left out. */
  example?: string
  /** 2 = one-time subscription, 3 = long-term subscription. */
  type: 2 | 3
  /** Allowed values of enum keys; `keywordCode` may carry a `.DATA` suffix or not. */
  keywordEnumValueList?: Array<{ keywordCode: string, enumValueList: string[] }>
}

/**
 * One queued fault (see `WechatSimulator.failNext`). Fields combine: `delayMs` is applied first, then
 * `drop`, else `httpStatus` (when not 200), else `errcode`; with none of those the normal answer is sent.
 */
export interface SimFault {
  /** Answer this errcode (HTTP 200, errmsg with a rid); `0` answers a bare `{"errcode":0,"errmsg":"ok"}`. */
  errcode?: number
  /** Exact errmsg to send, verbatim (no rid appended); implies `errcode: -1` when errcode is left out. */
  errmsg?: string
  /** Answer this HTTP status (e.g. 502, 503) with a small HTML body instead of JSON; 200 to 599, not 204, 205 or 304 (they carry no body). */
  httpStatus?: number
  /** Wall-clock delay before the answer, in milliseconds. */
  delayMs?: number
  /** Destroy the socket without any answer. */
  drop?: boolean
  /**
   * Let the request take effect first (send accepted, token issued, credit used) and only replace the
   * answer: models "WeChat did it but the answer was lost". Without it, `errcode`, `httpStatus` and
   * `drop` faults leave the simulator's state untouched.
   */
  processed?: boolean
  /** With a successful send, leave `msgid` out of the answer (WECHAT.md §2.2 UNCERTAIN). */
  omitMsgid?: boolean
}

/** One entry of `WechatSimulator.requests`. */
export interface SimRequestRecord {
  /** Which endpoint was called. */
  endpoint: SimEndpoint
  /** The `Host` header the client sent (tells which base URL a fail-over client used). */
  host: string
  /** Simulated time when the request arrived. */
  at: number
  /** errcode of the answer, when the answer carried one (0 for a successful send). */
  errcode?: number
  /** HTTP status of the answer; 0 when the connection was dropped. */
  httpStatus: number
}

/** One message accepted by `subscribe/send` (wire field names). */
export interface SimAcceptedMessage {
  /** Decimal string of the 64-bit msgid (always assigned, even when `returnMsgid` is false). */
  msgid: string
  /** Recipient openid. */
  touser: string
  /** Template id. */
  template_id: string
  /** Page, when sent. */
  page?: string
  /** `developer` | `trial` | `formal`, when sent. */
  miniprogram_state?: string
  /** Link language, when sent. */
  lang?: string
  /** The template's keys with their values as strings (extra keys are dropped, as WeChat ignores them). */
  data: Record<string, { value: string }>
  /** Simulated time of acceptance. */
  at: number
}

/** Counts of NEW tokens issued, per way of issuing. */
export interface SimTokenFetches {
  /** New tokens from `GET /cgi-bin/token`. */
  token: number
  /** New stable tokens from normal-mode `stable_token` calls (first issue and last-5-minute renewals). */
  stable_token: number
  /** New stable tokens from `force_refresh: true` calls. */
  force_refresh: number
}

/** Options of `createSimulator`. */
export interface SimulatorOptions {
  /** AppID the simulator accepts; default `'wx0000000000000000'`. */
  appId?: string
  /** AppSecret the simulator accepts; default `'simulator-secret-0000000000000000'`. */
  appSecret?: string
  /**
   * Clock for token lifetimes, force-refresh limits and record times. Default: a `SimulatorClock` frozen
   * at `Date.now()` that only moves through `advance`/`set`. Pass `{ now: () => Date.now() }` for real time.
   */
  clock?: ClockLike
  /** Wall-clock milliseconds added before every answer; default 0. */
  latencyMs?: number
  /** `expires_in` of a fresh token, in seconds; default 7200. */
  tokenTtlSeconds?: number
  /** Private templates of the account; default `DEMO_TEMPLATES`. */
  templates?: readonly SimTemplate[]
  /** When given, only these openids are valid `touser`s (others get 40003). */
  openids?: string[]
  /**
   * When given, the pages of the released version (app.json paths such as `'pages/index/index'`): a send
   * whose `page` path (the part before `?`) is not listed gets 41030 (WECHAT.md §2.1, §2.3). Default: any
   * page is accepted.
   */
  pages?: string[]
  /** Whether a successful send answers a `msgid`; default true. */
  returnMsgid?: boolean
  /** When true, one-time (type 2) templates need a credit per (openid, template); default false. */
  requireCredits?: boolean
  /**
   * Which `addtemplate` body encodings the simulated WeChat reads; the other one is answered with 47001
   * (data format error). WECHAT.md §4.5 is UNCERTAIN whether WeChat takes form, JSON or both; default `'both'`.
   */
  addTemplateEncoding?: 'form' | 'json' | 'both'
  /**
   * The most characters a `short_thing` value may have before the send gets 47003. WECHAT.md §3 is
   * UNCERTAIN (undocumented; one test suite saw more than 5 refused): default 5; raise it (the plugin
   * lets up to 20 through) to simulate a WeChat that takes longer values.
   */
  shortThingMax?: number
  /**
   * subscribe/send's daily quota (calls with a valid token per China-time day): the next call gets
   * 45009 until midnight China time or a quota reset (`clear_quota`, `clear_quota/v2`). WECHAT.md gives
   * no number for this API; default 10,000,000.
   */
  sendQuota?: number
  /**
   * The first msgid handed out (then +1 per accepted send), a decimal string or a bigint of 1 to 19
   * digits; default FIRST_MSGID, the same in every run. Against a Redis that outlives the simulator
   * (a dev Redis kept between runs), give each run its own (or its own `keyPrefix` to the plugin): the
   * plugin keeps msgid → message for its retention, and an old run's message would take a new receipt.
   */
  firstMsgid?: bigint | string
  /**
   * How long a push waits for the app's answer before the attempt counts as failed, in wall-clock ms;
   * default 5000, WeChat's wait (WECHAT.md §6.5). Lower it to test a slow app quickly.
   */
  pushTimeoutMs?: number
  /**
   * Wall-clock pause before each retry of a push the app did not acknowledge, in ms; default 1000
   * (WECHAT.md gives no interval). Lower it to keep tests fast.
   */
  pushRetryDelayMs?: number
  /** Fastify logger on or off; default false. */
  logger?: boolean
}
