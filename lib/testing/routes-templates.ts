import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { SimContext } from './context.js'
import { endpoint, serve } from './dispatch.js'
import type { EndpointHandler } from './dispatch.js'
import { buildTemplate, CATEGORIES, isNewOneTime, LIBRARY, makeTemplateId } from './library.js'
import type { LibraryTitle } from './library.js'
import { bodyText, charLength, mediaType, parseObject, queryParam } from './request.js'
import { buildExample } from './templates.js'
import { ok, wxError } from './wire.js'
import type { WireResponse } from './wire.js'

/** Most private templates an account may hold (200012 beyond; WECHAT.md §4.5). */
export const MAX_TEMPLATES = 25

const BASE = '/wxaapi/newtmpl'
const GET = { method: 'GET', auth: true } as const
const POST = { method: 'POST', auth: true } as const

/** The `/wxaapi/newtmpl/*` template management endpoints (WECHAT.md §4). */
export function templateRoutes (app: FastifyInstance, ctx: SimContext): void {
  const route = (path: string, handler: EndpointHandler): void => { serve(app, `${BASE}/${path}`, handler) }

  route('gettemplate', endpoint(ctx, 'gettemplate', GET, () => ok({
    data: [...ctx.templates.values()].map((t) => ({
      priTmplId: t.priTmplId,
      title: t.title,
      content: t.content,
      example: t.example ?? buildExample(t),
      type: t.type,
      ...(t.keywordEnumValueList === undefined ? {} : { keywordEnumValueList: t.keywordEnumValueList })
    }))
  })))

  route('getcategory', endpoint(ctx, 'getcategory', GET, () => ok({ data: CATEGORIES })))

  route('getpubtemplatetitles', endpoint(ctx, 'getpubtemplatetitles', GET, (request) => {
    const ids = queryParam(request, 'ids')
    const start = queryParam(request, 'start') ?? ''
    const limit = queryParam(request, 'limit') ?? ''
    if (ids === undefined || ids === '') return wxError(200018)
    if (!/^\d+(,\d+)*$/.test(ids)) return wxError(200019) // quotes around the list included
    if (!/^\d+$/.test(start)) return wxError(200016)
    if (!/^\d+$/.test(limit) || Number(limit) < 1 || Number(limit) > 30) return wxError(200017)
    const categories = new Set(ids.split(',').map(Number))
    const titles = LIBRARY.filter((t) => categories.has(t.categoryId))
    return ok({
      count: titles.length,
      data: titles.slice(Number(start), Number(start) + Number(limit))
        .map((t) => ({ tid: t.tid, title: t.title, type: t.type, categoryId: String(t.categoryId) }))
    })
  }))

  route('getpubtemplatekeywords', endpoint(ctx, 'getpubtemplatekeywords', GET, (request) => {
    const title = findTitle(queryParam(request, 'tid'))
    if (title === undefined) return wxError(200014)
    return ok({
      count: title.keywords.length,
      data: title.keywords.map((k) => ({ kid: k.kid, name: k.name, example: k.example, rule: k.rule }))
    })
  }))

  route('addtemplate', endpoint(ctx, 'addtemplate', POST, (request) => {
    const form = mediaType(request) === 'application/x-www-form-urlencoded'
    if (ctx.addTemplateEncoding !== 'both' && form !== (ctx.addTemplateEncoding === 'form')) return wxError(47001)
    const body = readBody(request)
    if (!('fields' in body)) return body
    const { tid, kidList = [], sceneDesc } = body.fields
    const title = findTitle(tid)
    if (title === undefined) return wxError(200014)
    const kids = readKids(title, kidList)
    if (kids === undefined) return wxError(200020)
    if (sceneDesc !== undefined && (typeof sceneDesc !== 'string' || charLength(sceneDesc) > 15)) return wxError(200021)
    if (ctx.templates.size >= MAX_TEMPLATES) return wxError(200012)
    const priTmplId = makeTemplateId()
    ctx.templates.set(priTmplId, buildTemplate(title, kids, priTmplId))
    return ok({ priTmplId })
  }))

  route('deltemplate', endpoint(ctx, 'deltemplate', POST, (request) => {
    const body = readBody(request)
    if (!('fields' in body)) return body
    const id = body.fields.priTmplId
    if (typeof id !== 'string' || !ctx.templates.delete(id)) return wxError(20002)
    return ok()
  }))
}

/**
 * A POST body as fields: `application/x-www-form-urlencoded` (repeated `kidList` / `kidList[]` become an
 * array) or JSON for any other content type. 44002 when empty, 47001 when not parsable or not read.
 */
function readBody (request: FastifyRequest): { fields: Record<string, unknown> } | WireResponse {
  const text = bodyText(request)
  if (text === undefined) return wxError(47001)
  if (text.trim() === '') return wxError(44002)
  if (mediaType(request) === 'application/x-www-form-urlencoded') {
    const params = new URLSearchParams(text)
    const fields: Record<string, unknown> = {}
    for (const name of new Set(params.keys())) {
      if (name === 'kidList' || name === 'kidList[]') {
        fields.kidList = [...(fields.kidList as string[] | undefined ?? []), ...params.getAll(name)]
      } else {
        fields[name] = params.get(name)
      }
    }
    return { fields }
  }
  const fields = parseObject(text)
  return fields === undefined ? wxError(47001) : { fields }
}

function findTitle (tid: unknown): LibraryTitle | undefined {
  const text = typeof tid === 'number' ? String(tid) : tid
  return typeof text === 'string' && /^\d+$/.test(text) ? LIBRARY.find((t) => t.tid === Number(text)) : undefined
}

/** The keyword ids to use, or undefined when `kidList` breaks the rules (200020). */
function readKids (title: LibraryTitle, kidList: unknown): number[] | undefined {
  if (!Array.isArray(kidList)) return undefined
  const kids = kidList.map(Number)
  if (isNewOneTime(title.tid)) return kids.length === 0 ? title.keywords.map((k) => k.kid) : undefined
  const known = kids.every((kid) => title.keywords.some((k) => k.kid === kid))
  return known && kids.length >= 2 && kids.length <= 5 && new Set(kids).size === kids.length ? kids : undefined
}
