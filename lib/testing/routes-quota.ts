import type { FastifyInstance } from 'fastify'
import type { SimContext } from './context.js'
import { endpoint, serve } from './dispatch.js'
import { bodyText, parseObject } from './request.js'
import { checkAppSecret } from './routes-token.js'
import { ok, wxError } from './wire.js'
import { TOKEN_DAILY_LIMITS } from './quota.js'
import type { TokenCgiPath } from './quota.js'
import type { WireResponse } from './wire.js'

/** The API whose quota the simulator enforces (the plugin's); getApiQuota also reports the token endpoints', and answers 76021 for others. */
export const SEND_CGI_PATH = '/cgi-bin/message/subscribe/send'

/**
 * WECHAT.md §8.1: `POST /cgi-bin/openapi/quota/get` (getApiQuota), `POST /cgi-bin/clear_quota` (with a
 * token, body `{appid}`) and `POST /cgi-bin/clear_quota/v2` (no token, body `{appid, appsecret}`: it
 * works when the token quota itself is used up). A reset starts today's counts again (subscribe/send
 * and the force-refresh budget); the two share 10 a month (48006 beyond).
 */
export function quotaRoutes (app: FastifyInstance, ctx: SimContext): void {
  serve(app, '/cgi-bin/openapi/quota/get', endpoint(ctx, 'quota_get', { method: 'POST', auth: true }, (request) => {
    const body = readBody(bodyText(request))
    if (!('fields' in body)) return body
    const path = body.fields.cgi_path
    // "The path starts with / and has no host; a malformed path gets 76003."
    if (typeof path !== 'string' || !path.startsWith('/') || path.startsWith('//') || /[\s?#]/.test(path)) return wxError(76003)
    const quota = path === SEND_CGI_PATH ? ctx.quota.sendQuota() : path in TOKEN_DAILY_LIMITS ? ctx.quota.tokenQuota(path as TokenCgiPath) : undefined
    if (quota === undefined) return wxError(76021)
    return ok({ quota, rate_limit: { call_count: 0, refresh_second: 60 }, component_rate_limit: { call_count: 0, refresh_second: 60 } })
  }))

  serve(app, '/cgi-bin/clear_quota', endpoint(ctx, 'clear_quota', { method: 'POST', auth: true }, (request) => {
    const body = readBody(bodyText(request))
    if (!('fields' in body)) return body
    const { appid } = body.fields
    if (appid === undefined || appid === null || appid === '') return wxError(41002)
    if (appid !== ctx.appId) return wxError(40013)
    return clear(ctx)
  }))

  serve(app, '/cgi-bin/clear_quota/v2', endpoint(ctx, 'clear_quota_v2', { method: 'POST', auth: false }, (request) => {
    const body = readBody(bodyText(request))
    if (!('fields' in body)) return body
    return checkAppSecret(ctx, body.fields.appid, body.fields.appsecret) ?? clear(ctx)
  }))
}

function clear (ctx: SimContext): WireResponse {
  if (!ctx.quota.clear()) return wxError(48006)
  ctx.tokens.clearForceBudget()
  return ok()
}

/** A JSON object body, or the answer for one that is not: 47001 unreadable or not an object, 44002 empty. */
function readBody (text: string | undefined): { fields: Record<string, unknown> } | WireResponse {
  if (text === undefined) return wxError(47001)
  if (text.trim() === '') return wxError(44002)
  const fields = parseObject(text)
  return fields === undefined ? wxError(47001) : { fields }
}
