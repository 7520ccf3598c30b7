import { WechatTokenError, WechatUpstreamError } from '../errors.js'
import type { WechatTokenErrorInstance } from '../errors.js'
import { errcodeOf, tokenErrorAdvice } from './errcodes.js'
import type { WechatHttpClient } from './http-client.js'
import { cutErrmsg, redactErrmsg } from './errmsg.js'
import { extractRid } from './rid.js'

export interface FetchedToken { token: string, expiresIn: number }

/** WECHAT.md §1.1/§1.2: tokens live at most 7200 s. */
const MAX_EXPIRES_IN = 7200

export interface TokenEndpointOptions {
  mode: 'stable' | 'classic'
  appId: string
  appSecret: string
}

/** FST_WECHAT_TOKEN with the fields the token manager sets (errors.ts) */
export type TokenErrorInstance = WechatTokenErrorInstance

/**
 * One call to WeChat's token endpoint (WECHAT.md §1.1, §1.2). The secret travels only in this
 * request; errors carry the errcode, rid and advice, never the secret nor the URL that held it.
 * `cancel` cuts the request off (close()): a token fetch cut short is harmless.
 */
export async function fetchAccessToken (http: WechatHttpClient, options: TokenEndpointOptions, forceRefresh = false, cancel?: AbortSignal): Promise<FetchedToken> {
  let body: unknown
  try {
    body = options.mode === 'stable'
      ? await http.call('POST', '/cgi-bin/stable_token', {
        json: { grant_type: 'client_credential', appid: options.appId, secret: options.appSecret, force_refresh: forceRefresh },
        cancel
      })
      : await http.call('GET', '/cgi-bin/token', {
        query: { grant_type: 'client_credential', appid: options.appId, secret: options.appSecret },
        cancel
      })
  } catch (err) {
    const upstream = err as InstanceType<typeof WechatUpstreamError>
    const error = new WechatTokenError(`${endpointName(options)} unreachable (${upstream.message.replace(/^.*?: /, '')})`, { cause: err }) as TokenErrorInstance
    error.retryable = true
    throw error
  }
  const answer = (body ?? {}) as { access_token?: unknown, expires_in?: unknown, errcode?: unknown, errmsg?: unknown }
  const errcode = errcodeOf(answer.errcode)
  if (errcode === 0 && typeof answer.access_token === 'string' && answer.access_token.length > 0) {
    const expiresIn = Number(answer.expires_in)
    // WeChat promises "a value within 7200"; a missing or odd value is treated as the shortest sane
    // one, and a larger one is not believed (a token cached for days would outlive its real life).
    return { token: answer.access_token, expiresIn: Number.isFinite(expiresIn) && expiresIn > 0 ? Math.min(expiresIn, MAX_EXPIRES_IN) : 300 }
  }
  const redacted = redactErrmsg(typeof answer.errmsg === 'string' ? answer.errmsg : 'no access_token in the answer', [options.appSecret])
  const errmsg = cutErrmsg(redacted)
  const code = Number.isFinite(errcode) && errcode !== 0 ? errcode : -1
  const rid = extractRid(redacted)
  const error = new WechatTokenError(`${endpointName(options)} answered errcode ${code}: ${tokenErrorAdvice(code, errmsg)} (errmsg: ${errmsg})`) as TokenErrorInstance
  error.errcode = code
  error.errmsg = errmsg
  error.rid = rid
  error.retryable = code === -1 || code === 45011
  throw error
}

function endpointName (options: TokenEndpointOptions): string {
  return options.mode === 'stable' ? 'cgi-bin/stable_token' : 'cgi-bin/token'
}
