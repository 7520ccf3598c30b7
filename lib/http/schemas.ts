import { Type } from '@sinclair/typebox'
import type { Static, TSchema } from '@sinclair/typebox'
import type { FastifySchema } from 'fastify'
import { LangSchema, MiniprogramStateSchema } from '../options-schema.js'

/**
 * The HTTP surface's schemas (STYLE.md rule 10): one TypeBox definition per shape gives validation
 * (validator.ts), response serialisation and the OpenAPI spec @fastify/swagger builds. Objects are
 * closed (`additionalProperties: false`): an unknown field is a 400, and a response never carries
 * a field nobody declared.
 */
const closed = { additionalProperties: false } as const

const KeywordValue = Type.Union([
  Type.String(),
  Type.Number(),
  Type.Object({ value: Type.Union([Type.String(), Type.Number()]) }, closed)
])

/** DESIGN.md `SubscribeMessage`; keyword rules are checked afterwards by the delivery part. */
const messageProperties = {
  toUser: Type.String({ minLength: 1, maxLength: 128, description: 'the recipient\'s openid' }),
  templateId: Type.String({ minLength: 1, maxLength: 128 }),
  data: Type.Record(Type.String(), KeywordValue, { minProperties: 1, maxProperties: 50, ...closed, description: 'template keywords, e.g. { "thing1": "Parcel shipped" }' }),
  page: Type.Optional(Type.String({ maxLength: 1024 })),
  miniprogramState: Type.Optional(MiniprogramStateSchema),
  lang: Type.Optional(LangSchema)
}

const IdempotencyKey = Type.String({ minLength: 1, maxLength: 200, description: 'a repeat with the same key returns the first message instead of sending again' })

export const MessageBody = Type.Object({ ...messageProperties, idempotencyKey: Type.Optional(IdempotencyKey) }, { ...closed, description: 'a subscribe message' })
export type MessageBodyType = Static<typeof MessageBody>

export const SendQuery = Type.Object({
  queue: Type.Optional(Type.Boolean({ description: 'true: queue it (202) instead of sending now (200)' }))
}, closed)
export type SendQueryType = Static<typeof SendQuery>

export const MAX_BATCH = 500

export const BatchBody = Type.Object({
  messages: Type.Array(Type.Unknown({ description: 'a subscribe message (same fields as POST /messages, without idempotencyKey); each is checked on its own' }), { minItems: 1, maxItems: MAX_BATCH }),
  // Room for the `:index` suffix each item's key gets, within the 200-character key limit.
  idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 190, description: 'item i is queued with the key `idempotencyKey:i`' }))
}, closed)
export type BatchBodyType = Static<typeof BatchBody>

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }, closed)
export type IdParamsType = Static<typeof IdParams>

export const DashboardQuery = Type.Object({
  token: Type.Optional(Type.String({ maxLength: 4096, description: 'sent back by the page as `Authorization: Bearer <token>` on its refreshes' })),
  refresh: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600, description: 'seconds between refreshes (default 5)' }))
}, closed)
export type DashboardQueryType = Static<typeof DashboardQuery>

const Status = Type.Union(['pending', 'sending', 'sent', 'delivered', 'failed', 'unknown'].map((s) => Type.Literal(s)))

const Change = Type.Object({ key: Type.String(), from: Type.String(), to: Type.String(), changes: Type.Array(Type.String()) }, closed)

export const SendReply = Type.Object({
  id: Type.String(),
  msgid: Type.Optional(Type.String({ description: 'WeChat\'s msgid, a decimal string' })),
  changes: Type.Optional(Type.Array(Change, { description: 'what validation: \'truncate\' changed' })),
  duplicate: Type.Optional(Type.Literal(true, { description: 'the idempotencyKey was used before: nothing was sent' }))
}, closed)

const Duplicate = Type.Literal(true, { description: 'the idempotencyKey was used before: this is the first message, nothing was queued again' })
export const QueuedReply = Type.Object({
  id: Type.String(),
  status: Status,
  changes: Type.Optional(Type.Array(Change, { description: 'what validation: \'truncate\' changed' })),
  duplicate: Type.Optional(Duplicate)
}, closed)

const ItemError = Type.Object({ code: Type.String(), message: Type.String() }, closed)
export const BatchItem = Type.Object({
  index: Type.Integer({ minimum: 0 }),
  id: Type.Optional(Type.String()),
  status: Type.Optional(Status),
  duplicate: Type.Optional(Duplicate),
  error: Type.Optional(ItemError)
}, closed)
export type BatchItemType = Static<typeof BatchItem>

export const BatchReply = Type.Object({
  accepted: Type.Integer({ minimum: 0 }),
  rejected: Type.Integer({ minimum: 0 }),
  results: Type.Array(BatchItem)
}, closed)

export const RecordReply = Type.Object({
  id: Type.String(),
  status: Status,
  templateId: Type.String(),
  toUser: Type.String(),
  attempts: Type.Integer(),
  errcode: Type.Optional(Type.Integer()),
  errmsg: Type.Optional(Type.String()),
  msgid: Type.Optional(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  source: Type.Optional(Type.Union([Type.Literal('send'), Type.Literal('queue'), Type.Literal('hook')])),
  idempotencyKey: Type.Optional(Type.String())
}, closed)

const countProperties = {
  pending: Type.Integer(),
  sending: Type.Integer(),
  sent: Type.Integer(),
  delivered: Type.Integer(),
  failed: Type.Integer(),
  unknown: Type.Integer()
}

export const StatsReply = Type.Object({
  ...countProperties,
  total: Type.Integer(),
  byTemplate: Type.Record(Type.String(), Type.Object(countProperties, closed), closed),
  errcodes: Type.Record(Type.String(), Type.Integer(), { ...closed, description: 'errcode → messages that ended failed/unknown with it' }),
  recentFailures: Type.Array(Type.Object({
    id: Type.String(),
    templateId: Type.String(),
    errcode: Type.Optional(Type.Integer()),
    errmsg: Type.Optional(Type.String()),
    at: Type.String()
  }, closed), { description: 'newest first' }),
  noConsent: Type.Integer({ description: 'failures with errcode 43101 (no subscription credit)' })
}, closed)

/** Fastify's error shape plus what a WeChat answer adds. */
export const OpenidParams = Type.Object({ openid: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$' }) }, closed)

export const CreditsReply = Type.Object({
  openid: Type.String(),
  credits: Type.Record(Type.String(), Type.Integer(), { description: 'templateId → sends left by our count (WeChat reports none)' })
}, closed)

export const TemplatesQuery = Type.Object({ refresh: Type.Optional(Type.Boolean({ description: 'ask WeChat instead of the shared cache' })) }, closed)

export const TemplatesReply = Type.Object({
  templates: Type.Array(Type.Object({
    priTmplId: Type.String(),
    title: Type.String(),
    content: Type.String(),
    example: Type.Optional(Type.String()),
    type: Type.Integer({ description: '2 one-time, 3 long-term' }),
    keywordEnumValueList: Type.Optional(Type.Array(Type.Object({ keywordCode: Type.String(), enumValueList: Type.Array(Type.String()) }, closed)))
  }, closed))
}, closed)

export const ErrorReply = Type.Object({
  statusCode: Type.Integer(),
  code: Type.Optional(Type.String()),
  error: Type.String(),
  message: Type.String(),
  errcode: Type.Optional(Type.Integer({ description: 'WeChat\'s errcode' })),
  errmsg: Type.Optional(Type.String({ description: 'WeChat\'s errmsg' })),
  rid: Type.Optional(Type.String({ description: 'WeChat\'s request id, for their support' })),
  id: Type.Optional(Type.String({ description: 'our message id: the failed message is recorded, or (FST_WECHAT_QUEUE) the message may still be queued' })),
  outcome: Type.Optional(Type.Union([Type.Literal('failed'), Type.Literal('unknown')], { description: 'unknown: an attempt timed out, WeChat may have delivered it' })),
  violations: Type.Optional(Type.Array(Type.Object({ key: Type.String(), rule: Type.String(), message: Type.String(), index: Type.Optional(Type.Integer({ minimum: 0 })) }, closed)))
}, closed)
export type ErrorReplyType = Static<typeof ErrorReply>

/**
 * A refusal by the user's own auth hook: its body is theirs, so it is passed through untouched (a
 * body it sends bypasses this schema: routes.ts). The fields are those of an error the hook throws,
 * which Fastify's default error handler serialises through this schema (an empty schema made it `{}`).
 */
const HookRefusal = Type.Object({
  statusCode: Type.Optional(Type.Integer()),
  code: Type.Optional(Type.String()),
  error: Type.Optional(Type.String()),
  message: Type.Optional(Type.String())
}, { additionalProperties: true, description: 'refused by your routes.onRequest / routes.preHandler hook' })

const ERROR_TEXT: Record<number, string> = {
  400: 'invalid request (schema or message rules, a body that is not JSON or over the size limit)',
  404: 'no message with this id',
  409: 'no subscription credit (credits: \'enforce\')',
  422: 'WeChat refused the message for good (errcode and errmsg say why)',
  500: 'a bug in fastify-wechat-push',
  502: 'WeChat answered an errcode (errcode and errmsg say which): transient, token rejected twice, or rate limit (45011) / daily quota (45009) with Retry-After',
  503: 'no access_token, the queue is off or the store is unavailable',
  504: 'WeChat could not be reached'
}

/** A `response` schema: the success shapes, the hook refusals and each listed error status. */
export function responses (success: Record<number, TSchema | Record<string, unknown>>, errors: number[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...success, 401: HookRefusal, 403: HookRefusal }
  for (const status of errors) out[status] = { ...ErrorReply, description: ERROR_TEXT[status] }
  return out
}

/** A route schema with the OpenAPI extras @fastify/swagger reads (its types are not a dependency of ours). */
export function routeSchema (schema: FastifySchema & { summary: string }): FastifySchema {
  return { tags: ['wechat'], ...schema } as FastifySchema
}
