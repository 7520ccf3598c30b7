/**
 * The push endpoint (WECHAT.md §6): WeChat → us. An encapsulated child plugin (STYLE.md rules 10, 11),
 * so its catch-all raw-text parser and its error handler never touch the user's app.
 *   GET  path: URL verification, echo `echostr` (§6.2)
 *   POST path: verify, decrypt, parse, dedupe, answer `success`, then emit (§6.3–§6.5)
 * Every failure is a 4xx with a fixed message, except a store that cannot take the push's effects
 * (503, so WeChat retries): WeChat never sees a 500, a stranger never sees a secret.
 */
import { STATUS_CODES } from 'node:http'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchema } from 'fastify'
import type { Clock, ResolvedOptions } from '../options.js'
import type { PushClaim, WechatStore } from '../store/types.js'
import { LateUndo } from '../store/late-undo.js'
import { EVENTS_DRAIN_MS } from './event-bus.js'
import type { PushEventBus } from './event-bus.js'
import { dedupeKey, normalizePush } from './events.js'
import type { PushMessage } from './events.js'
import { PushRejection } from './rejection.js'
import { checkConfig, checkPushQuery, openPush, verifyEcho } from './verify.js'
import { pushLogSerializers } from './request-line.js'
import type { PushQuery } from './verify.js'
import { PLUGIN_NAME } from '../version.js'

/**
 * How long a claimed push stays 'pending' to other attempts: far longer than applying it takes
 * (a few store commands, each under a 1 s deadline), short enough that a claim orphaned by a crash
 * does not swallow all of WeChat's retries.
 */
const CLAIM_MS = 10_000
/** How long a push waits for another attempt applying the same push, before answering 503. */
const PENDING_WAIT_MS = 2000
const PENDING_POLL_MS = 25

/**
 * WeChat's callback is no part of the app's API: `hide` makes @fastify/swagger leave it out (rather
 * than list it with an empty schema). A new object per route (Fastify marks the schemas it visits).
 * Cast: @fastify/swagger's types are not a dependency of ours.
 */
const hidden = (): FastifySchema => ({ hide: true }) as FastifySchema

export interface PushEndpointDeps {
  push: Exclude<ResolvedOptions['push'], false>
  appId: string
  store: WechatStore
  events: PushEventBus
  clock: Clock
  log: FastifyBaseLogger
}

// WeChat's content types are not documented (text/xml and application/json in practice), and the
// body itself says which format it is, so anything textual is accepted; forms, files, binaries are not.
const TEXTUAL = /^(?:text\/[\w.+-]+|application\/(?:[\w.-]+\+)?(?:xml|json))$/

function acceptableType (header: string | undefined): boolean {
  if (header === undefined) return true
  return TEXTUAL.test(header.split(';')[0].trim().toLowerCase())
}

function sendError (reply: FastifyReply, statusCode: number, code: string, message: string): FastifyReply {
  return reply.code(statusCode).type('application/json; charset=utf-8')
    .send({ statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message })
}

/** What to log about an unexpected error: never its message (it may quote the body). */
function errorSummary (err: Partial<FastifyError>): Record<string, unknown> {
  return { type: err.name, code: err.code, at: err.stack?.split('\n').find((line) => line.trimStart().startsWith('at '))?.trim() }
}

type Bindings = Record<string, unknown>

/**
 * What `log` binds on top of `appLog` (pino's `bindings()` holds the parents' too, which request.log
 * already has); `fallback` for a logger without `bindings()`.
 */
function ownBindings (log: FastifyBaseLogger, appLog: FastifyBaseLogger, fallback: Bindings): Bindings {
  const of = (logger: FastifyBaseLogger): Bindings | undefined => (logger as { bindings?: () => Bindings }).bindings?.()
  const own = of(log)
  if (own === undefined) return fallback
  const inherited = of(appLog) ?? {}
  return Object.fromEntries(Object.entries(own).filter(([key]) => !Object.hasOwn(inherited, key)))
}

/** Refusals of a push that carried a valid msg_signature: a configuration error, not a stranger */
/** The endpoint's codes for Fastify's own refusals of a push request, by status (others: BAD_REQUEST). */
const FASTIFY_REFUSALS: Readonly<Record<number, string>> = { 413: 'FST_WECHAT_PUSH_TOO_LARGE', 415: 'FST_WECHAT_PUSH_MEDIA_TYPE' }

const MISCONFIGURED: ReadonlySet<string> = new Set(['decrypt', 'padding', 'appid'])

export function registerPushEndpoint (fastify: FastifyInstance, deps: PushEndpointDeps): void {
  const { push, store, events, clock } = deps
  const config = checkConfig(push, deps.appId)
  // What is logged while handling a request goes through request.log (its reqId matches Fastify's
  // request lines) with the plugin logger's own bindings (plugin, appId, namespace) and level added.
  const bindings = ownBindings(deps.log, fastify.log, { plugin: PLUGIN_NAME, appId: deps.appId })
  const level = { level: deps.log.level }
  const requestLog = (request: FastifyRequest): FastifyBaseLogger => request.log.child(bindings, level)
  // Retries of one push come within seconds (§6.5); without a replay window, remember pushes 10 minutes.
  const dedupeTtlMs = push.replayWindowMs > 0 ? 2 * push.replayWindowMs : 600_000

  /**
   * Dedupe and the plugin's own effects, before the answer (§6.5: persist, then acknowledge). The
   * push is marked done only once its effects are stored; when the store cannot take them the answer
   * is a 503, the claim is dropped, and WeChat's retry (up to 3 attempts) applies the push once.
   * 'new': applied now, acknowledge and run the user handlers; 'duplicate': acknowledge only;
   * 'retry': do not acknowledge.
   */
  /** claims of attempts that answered 503, dropped even if they land late (store/late-undo.ts) */
  const lateUndo = new LateUndo()

  /**
   * An attempt that answers 503 drops its claim, so WeChat's retry is not told "being applied" for
   * CLAIM_MS; a claim that lands after the attempt gave up (Redis stalled) is dropped after it. Only
   * our own claim is dropped (compare-and-delete on the owner), so a late drop is harmless.
   */
  function dropClaim (key: string, owner: string): void {
    lateUndo.run(() => store.settlePush(key, null, owner), CLAIM_MS)
  }

  async function apply (message: PushMessage, request: FastifyRequest): Promise<'new' | 'duplicate' | 'retry'> {
    const key = dedupeKey(message)
    // (only a push other than the subscribe events lacks one: it has no effects of ours to store)
    if (key === undefined) return 'new'
    const owner = randomUUID()
    let claim: PushClaim
    try {
      claim = await store.claimPush(key, CLAIM_MS, owner)
      // Another attempt is applying it right now (the same push sent twice at once): wait a moment
      // for its outcome rather than refuse at once (WeChat waits 5 s for an answer).
      const deadline = Date.now() + PENDING_WAIT_MS
      while (claim === 'pending' && Date.now() < deadline) {
        await sleep(PENDING_POLL_MS)
        claim = await store.claimPush(key, CLAIM_MS, owner)
      }
    } catch (err) {
      requestLog(request).warn({ err: errorSummary(err as FastifyError), store: store.kind }, 'wechat: push dedupe unavailable; answered 503 so WeChat retries')
      // (the claim may have been taken all the same, its answer lost or late)
      dropClaim(key, owner)
      return 'retry'
    }
    if (claim === 'done') {
      requestLog(request).debug({ event: message.Event }, 'wechat: duplicate push (a WeChat retry) acknowledged again')
      return 'duplicate'
    }
    if (claim === 'pending') {
      // Another attempt is applying it right now: acknowledging this one could lose it if that fails.
      requestLog(request).warn({ event: message.Event }, 'wechat: push is being applied by another attempt; answered 503 so WeChat retries')
      return 'retry'
    }
    try {
      await events.applyInternal(message)
    } catch (err) {
      requestLog(request).warn({ err: errorSummary(err as FastifyError), store: store.kind, event: message.Event }, 'wechat: push effects could not be stored; answered 503 so WeChat retries')
      dropClaim(key, owner)
      return 'retry'
    }
    try {
      await store.settlePush(key, dedupeTtlMs)
    } catch (err) {
      // The effects are stored: acknowledging is right. Only a retry after CLAIM_MS could apply it twice.
      requestLog(request).warn({ err: errorSummary(err as FastifyError), store: store.kind }, 'wechat: push applied but not marked done; a WeChat retry may apply it twice')
    }
    return 'new'
  }

  fastify.register(async function wechatPushEndpoint (child) {
    child.removeAllContentTypeParsers()
    child.addContentTypeParser('*', { parseAs: 'string', bodyLimit: push.bodyLimit }, (_request, body, done) => { done(null, body) })

    // A refusal (4xx) is logged at info, as Fastify logs a client error; warn and error are for the
    // plugin's own failures.
    child.setErrorHandler((err: FastifyError | PushRejection, request, reply) => {
      const log = requestLog(request)
      if (err instanceof PushRejection) {
        // These come only after a msg_signature made with our Token matched (verify.ts): WeChat sent
        // it, and our key or AppID is not the console's. Every push fails until that is fixed.
        if (MISCONFIGURED.has(err.reason)) log.warn({ reason: err.reason, statusCode: err.statusCode }, 'wechat: push rejected: it is signed with our Token but does not decrypt to this AppID with push.encodingAESKey (or previousEncodingAESKey): check both against the MP console')
        else log.info({ reason: err.reason, statusCode: err.statusCode }, 'wechat: push rejected')
        return sendError(reply, err.statusCode, `FST_WECHAT_PUSH_${err.reason.toUpperCase()}`, err.message)
      }
      // Fastify's own 4xx (413 body too large, 415, bad content-length) keep their status and text,
      // under the endpoint's own codes (its answers are all FST_WECHAT_PUSH_*; the log keeps Fastify's).
      const status = err.statusCode
      if (typeof status === 'number' && status >= 400 && status < 500) {
        log.info({ code: err.code, statusCode: status }, 'wechat: push request refused')
        return sendError(reply, status, FASTIFY_REFUSALS[status] ?? 'FST_WECHAT_PUSH_BAD_REQUEST', err.message)
      }
      // A bug or a surprise: WeChat must still get a 4xx, never a 500 (DESIGN.md non-negotiables).
      log.error({ err: errorSummary(err) }, 'wechat: unexpected error on the push endpoint, answered 400')
      return sendError(reply, 400, 'FST_WECHAT_PUSH_BAD_REQUEST', 'push request could not be processed')
    })

    child.addHook('onClose', async () => {
      lateUndo.close()
      await events.drainForClose(EVENTS_DRAIN_MS)
    })

    // Fastify's request lines show these URLs with their signatures hidden (request-line.ts).
    const logSerializers = pushLogSerializers(child.log)
    child.get(push.path, { schema: hidden(), logSerializers }, async (request, reply) => {
      const echo = verifyEcho(request.query as PushQuery, config)
      // §6.2: the raw echostr as text. It is request-supplied text, so it never goes out as HTML.
      return reply.type('text/plain; charset=utf-8').header('x-content-type-options', 'nosniff').send(echo)
    })

    child.post(push.path, {
      schema: hidden(),
      logSerializers,
      bodyLimit: push.bodyLimit,
      // The query checks run before the body is read: a stranger's request costs no body and no parse.
      // openPush repeats them (microseconds) so it stays safe on its own.
      onRequest: async (request) => { checkPushQuery(request.query as PushQuery, config, clock.now()) }
    }, async (request, reply) => {
      if (!acceptableType(request.headers['content-type'])) {
        requestLog(request).info({ code: 'FST_WECHAT_PUSH_MEDIA_TYPE', statusCode: 415 }, 'wechat: push request refused')
        return sendError(reply, 415, 'FST_WECHAT_PUSH_MEDIA_TYPE', 'push body must be XML or JSON text')
      }
      const text = typeof request.body === 'string' ? request.body : ''
      const message = normalizePush(openPush(request.query as PushQuery, text, config, clock.now()))
      const outcome = await apply(message, request)
      if (outcome === 'retry') {
        // A coded 5xx, not an acknowledgement: WeChat retries (§6.5). Nothing about the store's error.
        return sendError(reply, 503, 'FST_WECHAT_PUSH_UNAVAILABLE', 'push could not be stored now; WeChat retries it')
      }
      // §6.5: answer within 5 s, then process: emit starts the user handlers after this response is written.
      if (outcome === 'new') events.emit(message)
      // §6.5: `success`, never encrypted, in every mode.
      return reply.type('text/plain; charset=utf-8').send('success')
    })
  })
}
