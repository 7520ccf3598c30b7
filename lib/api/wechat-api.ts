import { abortable } from './abort.js'
import { cutErrmsg, redactErrmsg } from './errmsg.js'
import { classifyErrcode, errcodeOf } from './errcodes.js'
import { answeredAfterAmbiguity } from './http-client.js'
import type { CallOptions, WechatHttpClient } from './http-client.js'
import { extractRid } from './rid.js'
import type { TokenManager } from './token-manager.js'

/** WeChat's answer to a business call, errcode normalised (a missing errcode means 0, WECHAT.md §0). */
export interface ApiAnswer {
  errcode: number
  errmsg: string
  rid?: string
  body: Record<string, unknown>
  /** an earlier attempt of this call (another base URL, or the one before a token retry) may have reached WeChat */
  ambiguous?: boolean
}

/**
 * Business APIs that take `access_token` in the query (every one but the token endpoints). Applies
 * the token rule once for all of them: on 40001/40014/42001, drop exactly the token that was used,
 * get the current one and retry once (WECHAT.md §1.5). The one exception: a stable token WeChat
 * refuses twice while its token endpoint hands it out as current is force-refreshed (within budget)
 * and the call tried a third time with the new token.
 */
export class WechatApi {
  /** `access_token=…` of the last token used, encoded once per token rather than once per call */
  private search = { token: '', encoded: '' }

  /** `appSecret`: redacted from errmsgs with the token in use (errmsg.ts) */
  constructor (readonly http: WechatHttpClient, readonly tokens: TokenManager, private readonly appSecret = '') {}

  async call (method: 'GET' | 'POST', path: string, options: CallOptions = {}): Promise<ApiAnswer> {
    // (a caller who gives up while the token is fetched stops waiting; the fetch goes on for the others)
    let token = this.tokens.current() ?? await abortable(this.tokens.getToken(), options.signal)
    let ambiguous = false
    /** the retry's token is the refused one, which stable_token handed out again as current */
    let sameToken = false
    for (let attempt = 1; ; attempt++) {
      options.signal?.throwIfAborted()
      const body = await this.http.call(method, path, { query: options.query, json: options.json, form: options.form, search: this.encoded(token), cancel: options.cancel })
      const answer = toAnswer(body, [token, this.appSecret])
      ambiguous ||= answeredAfterAmbiguity(body)
      if (ambiguous) answer.ambiguous = true
      if (classifyErrcode(answer.errcode) !== 'token') return answer
      if (attempt === 1) {
        const next = await abortable(this.tokens.rejected(token), options.signal)
        sameToken = next === token
        token = next
        continue
      }
      // Refused again with the token WeChat just handed out as current: one more try, only with the
      // new token a force_refresh gave (token-manager.ts refusedAgain); else this refusal is the answer.
      if (attempt > 2 || !sameToken) return answer
      const next = await abortable(this.tokens.refusedAgain(token), options.signal)
      if (next === token) return answer
      token = next
    }
  }

  private encoded (token: string): string {
    if (this.search.token !== token) this.search = { token, encoded: new URLSearchParams({ access_token: token }).toString() }
    return this.search.encoded
  }
}

/** `secrets`: what the call used, never to be repeated by its errmsg (errmsg.ts) */
export function toAnswer (body: unknown, secrets: readonly string[] = []): ApiAnswer {
  const object = (body !== null && typeof body === 'object' && !Array.isArray(body) ? body : {}) as Record<string, unknown>
  const text = typeof object.errmsg === 'string' ? object.errmsg : ''
  // 'ok' is every success's errmsg: nothing to clean, no rid to look for
  if (text === 'ok') return { errcode: errcodeOf(object.errcode), errmsg: text, rid: undefined, body: object }
  const redacted = redactErrmsg(text, secrets)
  // (the rid is read before a long text is cut: it comes last)
  return { errcode: errcodeOf(object.errcode), errmsg: cutErrmsg(redacted), rid: extractRid(redacted), body: object }
}
