import { Pool } from 'undici'
import type { Dispatcher } from 'undici'
import { WechatUpstreamError } from '../errors.js'
import { Deadlines } from './deadlines.js'
import { codeIn } from './errcodes.js'
import { Exchange } from './exchange.js'
import { parseWechatJson } from './json.js'

export interface HttpClientOptions {
  baseUrls: string[]
  /** per call, in ms: covers connect, headers and body */
  timeout: number
  /** sockets per base URL */
  connections?: number
}

export interface CallOptions {
  query?: Record<string, string | number | undefined>
  json?: unknown
  form?: string
  /** an already encoded query string, appended after `query` (WechatApi's access_token, encoded once per token) */
  search?: string
  /**
   * WechatApi.call only: ends the wait for a token, and is checked again just before the request
   * leaves (a send whose caller gave up while it waited for a token is not made); a request on its
   * way is not cut off.
   */
  signal?: AbortSignal
  /**
   * Cuts the request off, even on its way (close()): only for calls whose repeat is harmless, the
   * token fetch and the template reads. A send is never cut (it may be delivered all the same).
   */
  cancel?: AbortSignal
}

export interface UpstreamFields {
  /** true when the request may have reached WeChat (timeout, reset, 5xx): the outcome is unknown */
  ambiguous: boolean
  timedOut: boolean
  httpStatus?: number
  /**
   * A 4xx other than 408, 425 and 429 (RETRYABLE_4XX) without a WeChat errcode: something on the way (a proxy, a WAF, a
   * wrong baseUrl path) refused the request itself, and the same request is refused again: not retried.
   */
  refused?: boolean
}

/** 4xx statuses that say "later", not "no": retried like the network */
const RETRYABLE_4XX = new Set([408, 425, 429])

/** Connection-phase failures: the request never left, so nothing can have been delivered. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED'])
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'WECHAT_DEADLINE'])

// Shared, never mutated (undici only reads them): no header object per call.
const GET_HEADERS = Object.freeze({ accept: 'application/json' })
const JSON_HEADERS = Object.freeze({ accept: 'application/json', 'content-type': 'application/json' })
const FORM_HEADERS = Object.freeze({ accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' })

/**
 * The only place that speaks HTTP to WeChat. One undici Pool per base URL, owned here and closed
 * in `close()`. A call walks the ordered `baseUrls` and moves to the next one only on a network
 * error or a 5xx (WECHAT.md §9): an errcode answer is WeChat's word and is returned as-is.
 */
export class WechatHttpClient {
  /** `prefix`: the base URL's path ('' for an origin), put before every call's path */
  private readonly pools: { baseUrl: string, prefix: string, pool: Pool }[]
  private readonly timeout: number
  private readonly deadlines: Deadlines

  constructor (options: HttpClientOptions) {
    this.timeout = options.timeout
    this.deadlines = new Deadlines(options.timeout)
    this.pools = options.baseUrls.map((baseUrl) => {
      const { origin, pathname } = new URL(baseUrl)
      return {
        baseUrl,
        prefix: pathname.replace(/\/+$/, ''),
        pool: new Pool(origin, {
          connections: options.connections ?? 128,
          headersTimeout: options.timeout,
          bodyTimeout: options.timeout,
          connectTimeout: Math.min(options.timeout, 10_000),
          keepAliveTimeout: 30_000
        })
      }
    })
  }

  async call (method: 'GET' | 'POST', path: string, options: CallOptions = {}): Promise<unknown> {
    const url = buildPath(path, options.query, options.search)
    let request: Dispatcher.DispatchOptions | undefined
    let lastError: Error | undefined
    let ambiguous = false
    let timedOut = false
    let httpStatus: number | undefined
    let refused = false
    for (const { pool, prefix } of this.pools) {
      try {
        request ??= requestOf(method, url, options)
        // undici's own timeouts use coarse timers (about 1 s resolution), so the call has its own
        // deadline: connect, headers and body together, on the client's shared deadline timer.
        const answer = answerOf(await new Exchange(this.deadlines).start(pool, prefix === '' ? request : { ...request, path: prefix + request.path }, options.cancel))
        // A base URL that timed out or answered 5xx before this one may have acted on the request
        if (ambiguous && answer !== null && typeof answer === 'object') Object.defineProperty(answer, AFTER_AMBIGUOUS, { value: true })
        return answer
      } catch (err) {
        const failure = describeFailure(err)
        ambiguous ||= failure.ambiguous
        timedOut ||= failure.timedOut
        httpStatus = failure.httpStatus ?? httpStatus
        refused = failure.refused === true
        lastError = err as Error
        if (!failure.failOver || options.cancel?.aborted === true) break
      }
    }
    const detail = lastError instanceof HttpStatusError && lastError.detail !== undefined ? ` (${lastError.detail})` : ''
    const reason = options.cancel?.aborted === true && lastError === options.cancel.reason
      ? 'cut short: the app is closing'
      : timedOut ? `timed out after ${this.timeout} ms` : httpStatus !== undefined ? `HTTP ${httpStatus}${detail}` : describeCause(lastError)
    const error = new WechatUpstreamError(`${method} ${path}: ${reason}`, { cause: lastError }) as InstanceType<typeof WechatUpstreamError> & UpstreamFields
    error.ambiguous = ambiguous
    error.timedOut = timedOut
    error.httpStatus = httpStatus
    if (refused) error.refused = true
    throw error
  }

  async close (): Promise<void> {
    this.deadlines.close()
    await Promise.all(this.pools.map(({ pool }) => pool.close().catch(() => pool.destroy())))
  }

  /** Exposed for tests and benchmarks that want the same dispatcher. */
  dispatchers (): Dispatcher[] {
    return this.pools.map(({ pool }) => pool)
  }
}

/**
 * Marks (non-enumerable) an answer that came from a later base URL after an earlier one's attempt may
 * have reached WeChat (a timeout, a reset, a 5xx): the request may have been carried out twice, and a
 * refusal of the second (43101) does not prove the first failed.
 */
const AFTER_AMBIGUOUS = Symbol('an earlier base URL may have acted on this request')

/** Whether `body` was answered after a fail-over from an attempt that may have reached WeChat. */
export function answeredAfterAmbiguity (body: unknown): boolean {
  return body !== null && typeof body === 'object' && (body as Record<symbol, unknown>)[AFTER_AMBIGUOUS] === true
}

class HttpStatusError extends Error {
  constructor (readonly statusCode: number, readonly detail?: string) {
    super(detail ?? `HTTP ${statusCode}`)
  }
}

/** The request, the same for every base URL (built once, on the first attempt). */
function requestOf (method: 'GET' | 'POST', path: string, options: CallOptions): Dispatcher.DispatchOptions {
  if (options.json !== undefined) return { method, path, headers: JSON_HEADERS, body: JSON.stringify(options.json) }
  if (options.form !== undefined) return { method, path, headers: FORM_HEADERS, body: options.form }
  return { method, path, headers: GET_HEADERS }
}

/**
 * WeChat's JSON answer, or the failure an HTTP error status or a non-JSON body means. WeChat answers
 * its errcodes with 200 (WECHAT.md §0); a 4xx whose body is still a WeChat answer (an object with a
 * numeric errcode: a gateway passing WeChat's word on with its own status) is read as that errcode,
 * so it gets its class (a 40164's advice, a 45011's minute) instead of a bare HTTP error.
 */
function answerOf ({ statusCode, text }: Exchange): unknown {
  if (statusCode >= 500) throw new HttpStatusError(statusCode)
  if (statusCode >= 400) {
    const answer = errcodeAnswer(text)
    if (answer === undefined) throw new HttpStatusError(statusCode)
    return answer
  }
  let body: unknown
  try {
    body = parseWechatJson(text)
  } catch {
    // A 200 that is not JSON comes from a proxy or a half-answer, never from WeChat itself.
    throw new HttpStatusError(statusCode, 'the answer was not JSON')
  }
  // Every WeChat answer is an object; `null`, `[]` or `"ok"` proves nothing was done (not a success).
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpStatusError(statusCode, 'the answer was not a JSON object')
  return body
}

function errcodeAnswer (text: string): Record<string, unknown> | undefined {
  try {
    const body = parseWechatJson(text) as Record<string, unknown> | null
    // an integer or a decimal string, as toAnswer reads it (an array or a primitive body has none)
    const errcode = codeIn(body?.errcode)
    if (errcode !== undefined && errcode !== 0) return body as Record<string, unknown>
  } catch {}
  return undefined
}

function buildPath (path: string, query?: CallOptions['query'], search?: string): string {
  let qs = ''
  if (query) {
    const params = new URLSearchParams()
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) params.append(key, String(value))
    }
    qs = params.toString()
  }
  if (search) qs = qs ? `${qs}&${search}` : search
  return qs ? `${path}?${qs}` : path
}

function describeFailure (err: unknown): UpstreamFields & { failOver: boolean } {
  if (err instanceof HttpStatusError) {
    const is5xx = err.statusCode >= 500
    // A non-JSON 200 or a 5xx may come after WeChat acted; a 4xx is a proxy refusing us.
    const refused = err.statusCode >= 400 && err.statusCode < 500 && !RETRYABLE_4XX.has(err.statusCode)
    return { ambiguous: is5xx || err.statusCode < 300, timedOut: false, httpStatus: err.statusCode, failOver: is5xx, refused }
  }
  const code = (err as { code?: string, name?: string }).code
  const name = (err as { name?: string }).name
  const timedOut = (code !== undefined && TIMEOUT_CODES.has(code)) || name === 'TimeoutError' || name === 'AbortError'
  const notSent = code !== undefined && NOT_SENT_CODES.has(code)
  return { ambiguous: !notSent, timedOut, failOver: true }
}

function describeCause (err: Error | undefined): string {
  if (!err) return 'no base URL answered'
  const code = (err as { code?: string }).code
  return code ? `${code}` : err.message
}
