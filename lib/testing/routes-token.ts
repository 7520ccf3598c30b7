import type { FastifyInstance } from 'fastify'
import type { SimContext } from './context.js'
import { endpoint, serve } from './dispatch.js'
import { bodyText, mediaType, parseObject, queryParam } from './request.js'
import type { IssuedToken } from './tokens.js'
import { json, wxError } from './wire.js'
import type { WireResponse } from './wire.js'

/** `GET /cgi-bin/token` and `POST /cgi-bin/stable_token` (WECHAT.md §1.1, §1.2). */
export function tokenRoutes (app: FastifyInstance, ctx: SimContext): void {
  serve(app, '/cgi-bin/token', endpoint(ctx, 'token', { method: 'GET', auth: false }, (request) => {
    const credentials = {
      grant_type: queryParam(request, 'grant_type'),
      appid: queryParam(request, 'appid'),
      secret: queryParam(request, 'secret')
    }
    const denied = checkCredentials(ctx, credentials)
    if (denied !== undefined) return denied
    ctx.quota.useToken('/cgi-bin/token')
    return tokenAnswer(ctx.tokens.issueClassic())
  }))

  serve(app, '/cgi-bin/stable_token', endpoint(ctx, 'stable_token', { method: 'POST', auth: false }, (request) => {
    // Only a JSON body is read; anything else looks like "no appid" (WECHAT.md §1.2 [COMM]), a body
    // that could not be read (over 1 MiB) included.
    const text = bodyText(request)
    const body = text !== undefined && mediaType(request) === 'application/json' ? parseObject(text) : undefined
    if (body === undefined) return wxError(41002)
    const denied = checkCredentials(ctx, body)
    if (denied !== undefined) return denied
    ctx.quota.useToken('/cgi-bin/stable_token')
    const issued = ctx.tokens.issueStable(body.force_refresh === true)
    return issued === 45009 ? wxError(45009) : tokenAnswer(issued)
  }))
}

/**
 * Credential errors in WeChat's order: 40002, 41002, 40013, 41004, then a wrong secret. WECHAT.md
 * gives two codes for it (§0: 40001 on a fetch, "the AppSecret is wrong"; 40125 "invalid
 * appsecret"): a secret shaped like a real one (32 hex digits, as the MP console issues them) that is
 * not this app's, a secret of another app, gets 40001; any other wrong secret 40125. An app must
 * read both as configuration errors, not as a stale token to fetch again.
 */
function checkCredentials (ctx: SimContext, c: Record<string, unknown>): WireResponse | undefined {
  if (c.grant_type !== 'client_credential') return wxError(40002)
  return checkAppSecret(ctx, c.appid, c.secret)
}

/** 41002, 40013, 41004, then 40001 / 40125 (above): the appid and secret pair, as clear_quota/v2 checks it too. */
export function checkAppSecret (ctx: SimContext, appid: unknown, secret: unknown): WireResponse | undefined {
  if (isMissing(appid)) return wxError(41002)
  if (appid !== ctx.appId) return wxError(40013)
  if (isMissing(secret)) return wxError(41004)
  if (secret !== ctx.appSecret) return wxError(typeof secret === 'string' && SECRET_SHAPE.test(secret) ? 40001 : 40125)
  return undefined
}

/** What an AppSecret issued by the MP console looks like. */
const SECRET_SHAPE = /^[0-9a-f]{32}$/i

function isMissing (value: unknown): boolean {
  return value === undefined || value === null || value === ''
}

/** Token success: `{"access_token","expires_in"}` without errcode. */
function tokenAnswer (issued: IssuedToken): WireResponse {
  return json({ access_token: issued.token, expires_in: issued.expiresIn })
}
