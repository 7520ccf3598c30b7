import type { FastifyBaseLogger } from 'fastify'
import { invalidArgument, WechatApiError, WechatUpstreamError } from '../errors.js'
import { msUntilQuotaReset } from './quota.js'
import type { WechatApiErrorInstance } from '../errors.js'
import { sharedAbortController } from './abort.js'
import { backoffDelay, sleep } from './backoff.js'
import { checkAddInput, checkTid, checkTitlesQuery } from './template-inputs.js'
import { classifyErrcode, isRetryableClass, RATE_LIMIT_DELAY_MS } from './errcodes.js'
import type { CallOptions, UpstreamFields } from './http-client.js'
import type { ApiAnswer, WechatApi } from './wechat-api.js'

/** A private template of the account, as `gettemplate` lists it (WECHAT.md §4.1). */
export interface PrivateTemplate {
  /** the id used as `templateId` when sending */
  priTmplId: string
  title: string
  /** the layout with its keys: `会议时间:{{date2.DATA}}\n会议地点:{{thing1.DATA}}\n` */
  content: string
  example: string
  /** 2 = one-time subscription, 3 = long-term subscription */
  type: 2 | 3
  /** allowed values of enum keys; `keywordCode` may carry `.DATA` (WECHAT.md §4.1 UNCERTAIN) */
  keywordEnumValueList?: Array<{ keywordCode: string, enumValueList: string[] }>
}

/** `getcategory` (WECHAT.md §4.2) */
export interface TemplateCategory { id: number, name: string }

/** One title of the public template library (WECHAT.md §4.3); `categoryId` is a string on the wire. */
export interface PublicTemplateTitle { tid: number, title: string, type: 2 | 3, categoryId: string }

/** One keyword of a public title (WECHAT.md §4.4); `rule` is the keyword's data type (`thing`, `time`…). */
export interface PublicTemplateKeyword { kid: number, name: string, example: string, rule: string }

export interface PublicTitlesQuery {
  /** category ids (from `categories()`), sent comma-separated without quotes */
  ids: number[]
  /** 0-based offset; default 0 */
  start?: number
  /** 1..30; default 30 */
  limit?: number
}

export interface AddTemplateInput {
  /** the public title's id */
  tid: number | string
  /** 2..5 keyword ids in display order; empty (or left out) for new one-time titles (tid 10000001..19999999) */
  kidList?: number[]
  /** at most 15 characters */
  sceneDesc?: string
}

export const TEMPLATE_PATHS = {
  list: '/wxaapi/newtmpl/gettemplate',
  categories: '/wxaapi/newtmpl/getcategory',
  publicTitles: '/wxaapi/newtmpl/getpubtemplatetitles',
  publicKeywords: '/wxaapi/newtmpl/getpubtemplatekeywords',
  add: '/wxaapi/newtmpl/addtemplate',
  remove: '/wxaapi/newtmpl/deltemplate'
} as const

/**
 * Answers that mean "WeChat could not read the body in this encoding" (WECHAT.md §4.5 UNCERTAIN: the
 * current page wants a form, older pages and SDKs send JSON): 47001 data format error, 41002 (seen when
 * a body is not what the endpoint parses), 44002 empty post data.
 */
const FORMAT_ERRCODES = new Set([47001, 41002, 44002])
/**
 * addtemplate's own parameter errors (200014 tid, 200020 kidList, 200021 sceneDesc). A server that
 * only parses the other encoding reads no fields at all and may well answer one of these instead of
 * 47001, so until an encoding has worked once they also get the other encoding tried.
 */
const PARAM_ERRCODES = new Set([200014, 200020, 200021])

type BodyFormat = 'form' | 'json'

/**
 * The subscribe template management endpoints (WECHAT.md §4), through the same WechatApi as send (so
 * the same token rules apply), with the same transient retry (-1, network, 5xx: backoff) and the same
 * FST_WECHAT_API errors. Arguments are checked locally first: a bad one never costs a call.
 */
export class TemplateApi {
  /** addtemplate's body encoding: form first, switched for good once the other one worked */
  private addFormat: BodyFormat = 'form'
  /** an addtemplate call succeeded in `addFormat`: its parameter errors are real from then on */
  private addFormatConfirmed = false
  /** close(): no more retries, no more waiting for a token, reads under way cut off */
  private readonly stop = sharedAbortController()

  constructor (
    private readonly api: WechatApi,
    private readonly retry: { attempts: number, minDelay: number, maxDelay: number },
    private readonly log: FastifyBaseLogger,
    /** (the plugin's clock: a 45009's retryAfter runs to the quota's reset by it) */
    private readonly now: () => number = Date.now
  ) {}

  /** The app is closing: a call under way ends now (a read is cut off; an add or remove on its way is not). */
  close (): void {
    this.stop.abort(new WechatUpstreamError('the app is closing (app.close()): WeChat is not called any more'))
  }

  /** `gettemplate`: the account's private templates. */
  async list (): Promise<PrivateTemplate[]> {
    const body = await this.request('GET', TEMPLATE_PATHS.list, {})
    // An answer without its list is no list at all: read as empty, it would refuse every template
    // locally (40037) on a glitch; failing, validation falls back to the key-name rules.
    if (!Array.isArray(body.data)) throw new WechatUpstreamError('gettemplate answered errcode 0 without its data list; the template list is not known')
    return arrayOf(body.data).flatMap((entry) => {
      const template = toPrivateTemplate(entry)
      return template === undefined ? [] : [template]
    })
  }

  /** `getcategory`: the account's categories, whose ids `publicTitles` takes. */
  async categories (): Promise<TemplateCategory[]> {
    const body = await this.request('GET', TEMPLATE_PATHS.categories, {})
    return arrayOf(body.data).map((c) => ({ id: Number(c.id), name: String(c.name ?? '') }))
  }

  /** `getpubtemplatetitles`: titles of the public library in the given categories. */
  async publicTitles (query: PublicTitlesQuery): Promise<{ count: number, data: PublicTemplateTitle[] }> {
    const { ids, start, limit } = checkTitlesQuery(query)
    const body = await this.request('GET', TEMPLATE_PATHS.publicTitles, { query: { ids: ids.join(','), start, limit } })
    return {
      count: Number(body.count ?? 0),
      data: arrayOf(body.data).map((t) => ({ tid: Number(t.tid), title: String(t.title ?? ''), type: Number(t.type) as 2 | 3, categoryId: String(t.categoryId ?? '') }))
    }
  }

  /** `getpubtemplatekeywords`: the keywords of a public title (`tid` goes in the query). */
  async publicKeywords (tid: number | string): Promise<{ count: number, data: PublicTemplateKeyword[] }> {
    const id = checkTid(tid, 'tid')
    const body = await this.request('GET', TEMPLATE_PATHS.publicKeywords, { query: { tid: id } })
    return {
      count: Number(body.count ?? 0),
      data: arrayOf(body.data).map((k) => ({ kid: Number(k.kid), name: String(k.name ?? ''), example: String(k.example ?? ''), rule: String(k.rule ?? '') }))
    }
  }

  /**
   * `addtemplate`: select a public title into the account. Sent form-encoded; if WeChat cannot read
   * that (47001, 41002, 44002, or before any add worked a parameter error) it is sent once more as
   * JSON, and the encoding that worked is kept. When both fail, the answer of the encoding WeChat
   * could read is reported.
   */
  async add (input: AddTemplateInput): Promise<{ priTmplId: string }> {
    const { tid, kidList, sceneDesc } = checkAddInput(input)
    const bodies: Record<BodyFormat, CallOptions> = {
      form: { form: addForm(tid, kidList, sceneDesc) },
      json: { json: { tid: String(tid), kidList, ...(sceneDesc === undefined ? {} : { sceneDesc }) } }
    }
    const first = this.addFormat
    const other: BodyFormat = first === 'form' ? 'json' : 'form'
    // addtemplate creates something: a network failure after the request left is not retried blindly.
    let answer = await this.call('POST', TEMPLATE_PATHS.add, bodies[first], false)
    if (FORMAT_ERRCODES.has(answer.errcode) || (!this.addFormatConfirmed && PARAM_ERRCODES.has(answer.errcode))) {
      this.log.info({ errcode: answer.errcode, rid: answer.rid, from: first, to: other }, 'wechat: addtemplate did not accept this body encoding; trying the other one')
      const second = await this.call('POST', TEMPLATE_PATHS.add, bodies[other], false)
      if (second.errcode === 0) this.addFormat = other
      // A format error on the second try says the first encoding was the readable one: keep its verdict.
      if (!FORMAT_ERRCODES.has(second.errcode)) answer = second
    }
    if (answer.errcode === 0) this.addFormatConfirmed = true
    const body = this.check(TEMPLATE_PATHS.add, answer)
    if (typeof body.priTmplId !== 'string' || body.priTmplId === '') throw apiError(TEMPLATE_PATHS.add, -1, 'the answer carried no priTmplId', undefined, this.now())
    return { priTmplId: body.priTmplId }
  }

  /** `deltemplate`: remove a private template. */
  async remove (priTmplId: string): Promise<void> {
    if (typeof priTmplId !== 'string' || priTmplId.trim() === '' || priTmplId.length > 128 || /[\s\p{Cc}]/u.test(priTmplId)) {
      throw invalidArgument([{ key: 'priTmplId', rule: 'required', message: 'priTmplId must be a template id (a non-empty string without spaces)' }])
    }
    await this.request('POST', TEMPLATE_PATHS.remove, { json: { priTmplId } })
  }

  private async request (method: 'GET' | 'POST', path: string, options: CallOptions): Promise<Record<string, unknown>> {
    return this.check(path, await this.call(method, path, options, true))
  }

  private check (path: string, answer: ApiAnswer): Record<string, unknown> {
    if (answer.errcode !== 0) throw apiError(path, answer.errcode, answer.errmsg, answer.rid, this.now())
    return answer.body
  }

  /**
   * One call with the transient retry of send (DESIGN.md "Error classes"): -1 and network errors back
   * off and retry up to `retry.attempts`; token errors were retried once by WechatApi. With
   * `idempotent` false, a network failure that may have reached WeChat is not retried.
   */
  private async call (method: 'GET' | 'POST', path: string, options: CallOptions, idempotent: boolean): Promise<ApiAnswer> {
    const stop = this.stop.signal
    // (a read cut off at close() is harmless; an add or remove on its way is let finish)
    const call = { ...options, signal: stop, ...(idempotent ? { cancel: stop } : {}) }
    for (let attempt = 1; ; attempt++) {
      stop.throwIfAborted()
      const last = attempt >= this.retry.attempts
      try {
        const answer = await this.api.call(method, path, call)
        if (answer.errcode === 0 || classifyErrcode(answer.errcode) !== 'transient' || last) return answer
        this.log.warn({ path, errcode: answer.errcode, rid: answer.rid, attempt }, 'wechat: template call answered a transient error; retrying')
      } catch (err) {
        const upstream = err as Error & Partial<UpstreamFields> & { code?: string }
        const retry = !last && !stop.aborted && upstream.code === 'FST_WECHAT_UPSTREAM' && upstream.refused !== true && (idempotent || upstream.ambiguous !== true)
        // (a read cut off by close() says so, not as the network error the cut made)
        if (!retry) throw stop.aborted && idempotent ? stop.reason : err
        this.log.warn({ path, reason: upstream.message, attempt }, 'wechat: template call did not complete; retrying')
      }
      await sleep(backoffDelay(attempt, this.retry), stop)
    }
  }
}

function apiError (path: string, errcode: number, errmsg: string, rid: string | undefined, now: number): WechatApiErrorInstance {
  const errorClass = classifyErrcode(errcode)
  const error = new WechatApiError(`${path.slice(path.lastIndexOf('/') + 1)}: errcode ${errcode} (${errmsg || 'no errmsg'})`) as WechatApiErrorInstance
  error.errcode = errcode
  error.errmsg = errmsg
  error.rid = rid
  error.errorClass = errorClass
  error.retryable = isRetryableClass(errorClass)
  // (as send()'s: README Errors, retryAfter for 45011 and 45009)
  if (errorClass === 'rate') error.retryAfter = RATE_LIMIT_DELAY_MS
  else if (errorClass === 'quota') error.retryAfter = msUntilQuotaReset(now)
  return error
}

function arrayOf (value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter((v): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)) : []
}

/** An entry of gettemplate, or undefined when it lacks what a template must have. */
export function toPrivateTemplate (entry: unknown): PrivateTemplate | undefined {
  if (entry === null || typeof entry !== 'object') return undefined
  const e = entry as Record<string, unknown>
  // (WeChat's ids are strings; a number, as a test double may write one, is the same id: dropping it
  // made every send to that template a local 40037)
  const id = typeof e.priTmplId === 'number' && Number.isFinite(e.priTmplId) ? String(e.priTmplId) : e.priTmplId
  if (typeof id !== 'string' || id === '') return undefined
  const template: PrivateTemplate = {
    priTmplId: id,
    title: typeof e.title === 'string' ? e.title : '',
    // (an entry without its content is still a template the account has: kept, its keys unknown)
    content: typeof e.content === 'string' ? e.content : '',
    example: typeof e.example === 'string' ? e.example : '',
    type: Number(e.type) as 2 | 3
  }
  const enums = arrayOf(e.keywordEnumValueList).flatMap((k) => typeof k.keywordCode === 'string' && Array.isArray(k.enumValueList)
    ? [{ keywordCode: k.keywordCode, enumValueList: k.enumValueList.map(String) }]
    : [])
  if (enums.length > 0) template.keywordEnumValueList = enums
  return template
}

function addForm (tid: number, kidList: number[], sceneDesc: string | undefined): string {
  const form = new URLSearchParams({ tid: String(tid) })
  for (const kid of kidList) form.append('kidList', String(kid))
  if (sceneDesc !== undefined) form.append('sceneDesc', sceneDesc)
  return form.toString()
}
