import type { FastifyBaseLogger, FastifyInstance, onRequestHookHandler, preHandlerHookHandler } from 'fastify'
import { invalid, WechatQueueError } from '../errors.js'
import type { Clock, HookOption, ResolvedOptions } from '../options.js'
import type { SubscribeMessage, WechatPush } from '../public-types.js'
import { registerDashboard } from './dashboard.js'
import { itemError, logError, mapError, maybeQueuedId, sendError, WechatStoreError } from './route-errors.js'
import type { Static } from '@sinclair/typebox'
import { BatchBody, BatchReply, CreditsReply, IdParams, MessageBody, OpenidParams, QueuedReply, RecordReply, responses, routeSchema, SendQuery, SendReply, StatsReply, TemplatesQuery, TemplatesReply } from './schemas.js'
import type { BatchBodyType, BatchItemType, IdParamsType, MessageBodyType, SendQueryType } from './schemas.js'
import { typeboxValidator } from './validator.js'

export interface RoutesDeps {
  routes: Exclude<ResolvedOptions['routes'], false>
  /** the same object as `fastify.wechat` (or its namespace): routes use only the public API */
  wechat: WechatPush
  /** whether a queue exists (`queue: false` turns it off) */
  queue: boolean
  clock: Clock
}

/** Explicit limits, so the routes do not depend on the app's bodyLimit: one message is small, 500 fit in 2 MiB. */
export const MESSAGE_BODY_LIMIT = 64 * 1024
export const BATCH_BODY_LIMIT = 2 * 1024 * 1024

/**
 * The optional HTTP surface (DESIGN.md "lib/http/", STYLE.md rule 10): an encapsulated child
 * plugin, so its hooks, validator and error handler touch only these routes. Mounted at our own
 * `routes.prefix` (after the register-level prefix: options.ts), inside whatever prefix the
 * app registered us under. The user's auth hooks run first on every route, the dashboard included.
 */
export function registerRoutes (fastify: FastifyInstance, deps: RoutesDeps): void {
  const { routes, wechat, clock } = deps
  if (routes.onRequest === undefined && routes.preHandler === undefined) {
    fastify.log.warn({ prefix: routes.prefix }, 'wechat: routes are exposed without an auth hook (routes.unprotected: true): anyone who reaches them can send messages')
  }

  fastify.register(async function wechatRoutes (child) {
    child.setValidatorCompiler(typeboxValidator)
    // Bodies are JSON: a text/plain body (which Fastify would parse as a string) is refused like any
    // other content type, with a 400 that says so (mapError), not a schema error about a string.
    child.removeContentTypeParser('text/plain')
    for (const hook of hookList(routes.onRequest)) child.addHook('onRequest', hook as onRequestHookHandler)
    for (const hook of hookList(routes.preHandler)) child.addHook('preHandler', hook as preHandlerHookHandler)
    // What the user's hooks answer is theirs (any status, any body: a 429 with its own fields, a 503
    // during maintenance): only answers made here go through the routes' response schemas, which
    // would otherwise turn a body of another shape into a 500 or strip its fields. Ours are the
    // requests that got past the user's hooks (this hook runs after theirs) or reached our error handler.
    const ours = new WeakSet<object>()
    child.addHook('preHandler', async (request) => { ours.add(request) })
    child.addHook('preSerialization', async (request, reply, payload) => {
      if (!ours.has(request)) reply.serializer(JSON.stringify)
      return payload
    })
    // A path under the prefix that matches no route is answered here, after the user's hooks: Fastify's
    // own 404 runs none of them, so a 401 for a route and a 404 for the rest mapped the routes for anyone.
    // (only when the routes have a prefix of their own: with routes.prefix '/' the child's 404 level
    // is its parent's, the app's, whose handler is the app's business)
    if (routes.prefix !== '') {
      child.setNotFoundHandler((request, reply) => {
        reply.code(404).send({ statusCode: 404, code: 'FST_ERR_NOT_FOUND', error: 'Not Found', message: `Route ${request.method}:${request.url} not found` })
      })
    }
    // Routes that only read from WeChat: a permanent errcode there is WeChat's refusal, not the caller's (502).
    const readOnlyUpstream = new Set([`${child.prefix}/templates`])
    child.setErrorHandler((err, request, reply) => {
      // An HTTP error thrown by a hook before our handlers (the user's auth hook's 401, a rate
      // limiter's 429, a hook the app added around the plugin) is theirs: it goes on to the app's
      // error handler untouched (it was rewritten here, its fields gone). Fastify's own refusals of a
      // request to these routes (body, content type, validation: FST_ERR_*), everything from our
      // handlers, and a hook's crash (no HTTP status: a logged 500 that reveals nothing) are mapped here.
      if (!ours.has(request) && !isFastifyRefusal(err) && hasHttpStatus(err)) throw err
      ours.add(request)
      const refusal = readOnlyUpstream.has(request.routeOptions.url ?? '') ? { refusalStatus: 502 as const } : {}
      const mapped = mapError(err, clock.now(), { ...refusal, bodyLimit: request.routeOptions.bodyLimit })
      logError(request.log, err, mapped)
      return sendError(reply, mapped)
    })

    child.post<{ Body: MessageBodyType, Querystring: SendQueryType }>('/messages', {
      bodyLimit: MESSAGE_BODY_LIMIT,
      schema: routeSchema({
        summary: 'Send a subscribe message now, or queue it with ?queue=true',
        querystring: SendQuery,
        body: MessageBody,
        response: responses({ 200: SendReply, 202: QueuedReply }, [400, 409, 422, 500, 502, 503, 504])
      })
    }, async (request, reply) => {
      const { idempotencyKey, ...message } = request.body
      const options = idempotencyKey === undefined ? {} : { idempotencyKey }
      if (request.query.queue !== true) return wechat.send(message as SubscribeMessage, options)
      const [queued] = await wechat.enqueue(message as SubscribeMessage, options)
      return reply.code(202).send(queued)
    })

    child.post<{ Body: BatchBodyType }>('/messages/batch', {
      bodyLimit: BATCH_BODY_LIMIT,
      schema: routeSchema({
        summary: 'Queue up to 500 messages; each one is accepted or refused on its own',
        body: BatchBody,
        response: responses({ 202: BatchReply }, [400, 500, 503])
      })
    }, async (request, reply) => {
      if (!deps.queue) throw new WechatQueueError('the queue is off (queue: false); POST /messages sends one message now')
      const { messages, idempotencyKey } = request.body
      const failures: unknown[] = []
      const results = await Promise.all(messages.map(async (message, index): Promise<BatchItemType> => {
        try {
          // One message per item: an item that is itself an array is refused, not spread into several.
          if (Array.isArray(message)) throw invalid([{ key: 'message', rule: 'type', message: 'the message must be an object (an item is one message, not an array)' }])
          const key = idempotencyKey === undefined ? undefined : `${idempotencyKey}:${index}`
          const [queued] = await wechat.enqueue(message as SubscribeMessage, { idempotencyKey: key })
          return queued.duplicate === true ? { index, id: queued.id, status: queued.status, duplicate: true } : { index, id: queued.id, status: queued.status }
        } catch (err) {
          failures.push(err)
          // An add cut off or not answered in time may still run (FST_WECHAT_QUEUE with messageIds):
          // the item says which message, so status(id) can tell, and a retry knows what to look up.
          const item: BatchItemType = { index, error: itemError(err, request.log) }
          const id = maybeQueuedId(err)
          if (id !== undefined) item.id = id
          return item
        }
      }))
      const accepted = results.length - failures.length
      // Nothing got in because of us (store or queue down): say so with that status, not a 202. Unless
      // an item may have got in after all: then the 202's results name it (an audit: a 503 hid the ids
      // of two messages that were sent, and a client retrying without a key sent them twice).
      const serverSide = failures.find((err) => mapError(err, clock.now()).statusCode >= 500)
      if (accepted === 0 && serverSide !== undefined && !results.some((item) => item.id !== undefined)) throw serverSide
      return reply.code(202).send({ accepted, rejected: failures.length, results })
    })

    child.get<{ Params: IdParamsType }>('/messages/:id', {
      schema: routeSchema({
        summary: 'The record of one message: status, attempts, errcode, msgid',
        params: IdParams,
        response: responses({ 200: RecordReply }, [400, 404, 500, 503])
      })
    }, async (request, reply) => {
      const record = await readStore(request.log, () => wechat.status(request.params.id))
      if (record) return record
      return reply.code(404).send({ statusCode: 404, code: 'FST_WECHAT_NOT_FOUND', error: 'Not Found', message: 'no message with this id (unknown, or older than the retention period)' })
    })

    child.get('/stats', {
      schema: routeSchema({
        summary: 'Counts per status and per template, errcodes, latest failures',
        response: responses({ 200: StatsReply }, [500, 503])
      })
    }, async (request) => readStore(request.log, () => wechat.stats()))

    child.get<{ Params: Static<typeof OpenidParams> }>('/credits/:openid', {
      schema: routeSchema({
        summary: "One user's subscription credits per template (option credits)",
        params: OpenidParams,
        response: responses({ 200: CreditsReply }, [400, 500, 503])
      })
    }, async (request) => ({ openid: request.params.openid, credits: await readStore(request.log, () => wechat.credits(request.params.openid)) }))

    child.get<{ Querystring: Static<typeof TemplatesQuery> }>('/templates', {
      schema: routeSchema({
        summary: "The mini program's subscribe templates (cached; ?refresh=true asks WeChat)",
        querystring: TemplatesQuery,
        response: responses({ 200: TemplatesReply }, [400, 500, 502, 503, 504])
      })
    }, async (request) => ({ templates: await wechat.templates.list({ refresh: request.query.refresh === true }) }))

    if (routes.dashboard) registerDashboard(child, { appId: wechat.appId, statsUrl: `${child.prefix}/stats`, stats: () => readStore(child.log, () => wechat.stats()) })
  }, { prefix: routes.prefix })
}

function hookList (hooks: HookOption | undefined): Exclude<HookOption, unknown[]>[] {
  if (hooks === undefined) return []
  return Array.isArray(hooks) ? hooks : [hooks]
}

/** A read that fails is the store's outage (503), not a bug; its reason is logged, not returned. */
export async function readStore<T> (log: FastifyBaseLogger, read: () => Promise<T>): Promise<T> {
  try {
    return await read()
  } catch (err) {
    log.warn({ reason: (err as Error).message }, 'wechat routes: the store did not answer')
    throw new WechatStoreError('the store did not answer; try again shortly', { cause: err })
  }
}

/** An error Fastify raised while reading a request for these routes (its body, content type or schema), not a hook's. */
function isFastifyRefusal (err: unknown): boolean {
  const { code, validation } = (err ?? {}) as { code?: unknown, validation?: unknown }
  return validation !== undefined || (typeof code === 'string' && code.startsWith('FST_ERR_'))
}

/** An error meant as an HTTP answer: it carries its status, as @fastify/sensible's and rate limiters' do. */
function hasHttpStatus (err: unknown): boolean {
  const status = (err as { statusCode?: unknown } | null)?.statusCode
  return typeof status === 'number' && status >= 400 && status <= 599
}
