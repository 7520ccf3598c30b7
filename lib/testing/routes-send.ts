import type { FastifyInstance } from 'fastify'
import { checkKeyword, keywordType } from '../delivery/keywords.js'
import type { SimContext } from './context.js'
import { endpoint, serve } from './dispatch.js'
import type { CallInfo } from './dispatch.js'
import { bodyText, isObject, parseObject } from './request.js'
import { enumValues, templateKeys } from './templates.js'
import type { SimAcceptedMessage, SimTemplate } from './types.js'
import { argumentInvalid, JSON_TYPE, wxError } from './wire.js'
import type { WireResponse } from './wire.js'

/** Shape of a well-formed openid when no `openids` list was given. */
export const OPENID_FORMAT = /^[A-Za-z0-9_-]{6,64}$/

const STATES = new Set(['developer', 'trial', 'formal'])
const LANGS = new Set(['zh_CN', 'en_US', 'zh_HK', 'zh_TW'])

/**
 * `POST /cgi-bin/message/subscribe/send` (WECHAT.md §2). Checks, in order: 45009 the daily quota used
 * up (option `sendQuota`, §8.1); 47001 a body that could not
 * be read (over 1 MiB); 44002 empty body; 47001 unparsable body, `data` or `page` of the wrong type;
 * 40003 touser; 40037 template_id; 47003 miniprogram_state, lang, then each template key in layout
 * order; 41030 page (only with `pages`); 43101 credits. `onAccepted` runs for an accepted message once
 * this request's answer went out (§7.3: the delivery result follows the send), or its connection was
 * dropped by a `processed` fault (WeChat pushes the result whether or not the answer arrived).
 */
export function sendRoutes (app: FastifyInstance, ctx: SimContext, onAccepted: (message: SimAcceptedMessage) => void): void {
  serve(app, '/cgi-bin/message/subscribe/send', endpoint(ctx, 'send', { method: 'POST', auth: true }, (request, call) => send(ctx, bodyText(request), call, onAccepted)))
}

function send (ctx: SimContext, text: string | undefined, call: CallInfo, onAccepted: (message: SimAcceptedMessage) => void): WireResponse {
  // the daily quota first: every call with a valid token uses it, whatever its body (`sendQuota`)
  if (!ctx.quota.useSend()) return wxError(45009)
  if (text === undefined) return wxError(47001)
  if (text.trim() === '') return wxError(44002)
  const body = parseObject(text)
  if (body === undefined) return wxError(47001)
  const { touser, template_id: templateId, page, miniprogram_state: state, lang } = body
  const data = body.data === undefined ? {} : body.data
  if (!isObject(data) || (page !== undefined && typeof page !== 'string')) return wxError(47001)
  if (typeof touser !== 'string' || !validOpenid(ctx, touser)) return wxError(40003)
  const template = typeof templateId === 'string' ? ctx.templates.get(templateId) : undefined
  if (template === undefined) return wxError(40037)
  if (state !== undefined && !STATES.has(state as string)) return argumentInvalid('miniprogram_state invalid')
  if (lang !== undefined && !LANGS.has(lang as string)) return argumentInvalid('lang invalid')
  const values = checkData(template, data, ctx.shortThingMax)
  if (!(values instanceof Map)) return values
  // Checked after the payload and before the credit, so a wrong page never uses up a subscription.
  if (typeof page === 'string' && ctx.pages !== undefined && !ctx.pages.has(page.split('?')[0])) return wxError(41030)
  if (ctx.requireCredits && template.type === 2 && !ctx.credits.use(touser, template.priTmplId)) {
    return wxError(43101)
  }
  const msgid = ctx.nextMsgid++
  const message: SimAcceptedMessage = {
    msgid: msgid.toString(),
    touser,
    template_id: template.priTmplId,
    ...(page === undefined ? {} : { page }),
    ...(state === undefined ? {} : { miniprogram_state: state as string }),
    ...(lang === undefined ? {} : { lang: lang as string }),
    data: Object.fromEntries([...values].map(([key, value]) => [key, { value }])),
    at: ctx.clock.now()
  }
  ctx.accepted.push(message)
  const withMsgid = ctx.returnMsgid && call.fault?.omitMsgid !== true
  // Written by hand so the 64-bit msgid goes out as a bare number with every digit exact.
  const answer = withMsgid ? `{"errcode":0,"errmsg":"ok","msgid":${msgid}}` : '{"errcode":0,"errmsg":"ok"}'
  return { status: 200, contentType: JSON_TYPE, body: answer, errcode: 0, then: () => { onAccepted(message) } }
}

function validOpenid (ctx: SimContext, openid: string): boolean {
  return ctx.openids === undefined ? OPENID_FORMAT.test(openid) : ctx.openids.has(openid)
}

/** The template's values as strings, or the 47003 answer for the first bad one; extra keys are ignored. */
function checkData (template: SimTemplate, data: Record<string, unknown>, shortThingMax: number): Map<string, string> | WireResponse {
  const values = new Map<string, string>()
  for (const key of templateKeys(template.content)) {
    const entry = data[key]
    const value = isObject(entry) ? entry.value : undefined
    if (value === undefined || value === null || value === '') return argumentInvalid(`data.${key}.value is empty`)
    if (typeof value !== 'string' && typeof value !== 'number') return argumentInvalid(`data.${key}.value invalid`)
    const violation = checkKeyword(key, String(value), { enumValues: enumValues(template, key) })
    if (violation !== null) {
      return argumentInvalid(`data.${key}.value ${violation.rule === 'empty' ? 'is empty' : 'invalid'}`)
    }
    // The plugin lets short_thing through loosely; WeChat was observed to refuse more than 5 (WECHAT.md §3,
    // UNCERTAIN: shortThingMax sets the limit).
    if (keywordType(key) === 'short_thing' && [...String(value)].length > shortThingMax) {
      return argumentInvalid(`data.${key}.value invalid`)
    }
    values.set(key, String(value))
  }
  return values
}
