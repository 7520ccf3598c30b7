import type { FastifyInstance, FastifyReply, FastifyRequest, onSendHookHandler, preSerializationHookHandler } from 'fastify'
import type { Delivery } from '../delivery/delivery.js'
import type { SubscribeMessage } from '../delivery/message.js'
import type { TypedMessage } from '../typed-templates.js'
import { snapshotMessage } from '../delivery/message.js'
import { thrownText, WechatOptionsError } from '../errors.js'
import { PushBatcher } from './push-batcher.js'
import type { HandlerPushCounters } from './push-batcher.js'

/**
 * what `config.wechatPush` returns: the message(s) to queue, or nothing. A typed message
 * (`templateId: defineTemplate(...)`) is taken too; its data keys are checked when the function's
 * return type names its template (`TypedMessage<typeof shipped.keys>`).
 */
export type WechatPushResult = AnyMessage | AnyMessage[] | null | undefined
type AnyMessage = SubscribeMessage | TypedMessage<any>
/**
 * `config.wechatPush`: `payload` is the object the route's handler returned. Fastify's route config
 * is not tied to the handler's type, so say what it is: annotate the parameter
 * (`(request, reply, order: Order) => ...`) or type the function (`WechatPushConfig<Order>`).
 */
export type WechatPushConfig<Payload = unknown> = (request: FastifyRequest, reply: FastifyReply, payload: Payload) => WechatPushResult | Promise<WechatPushResult>

const kPending = Symbol('wechatPush.pending')
const kPayload = Symbol('wechatPush.payload')
const kConfigured = Symbol('wechatPush.configuredRan')

interface ReplyState { [kPending]?: unknown[], [kPayload]?: unknown, [kConfigured]?: true }

export type { HandlerPushCounters }

/**
 * Pushes triggered from route handlers (DESIGN.md `reply.wechatPush`, `config.wechatPush`): taken in
 * onSend and accepted, once the response is out, only when the status it went out with is < 400,
 * without waiting for WeChat or delaying the response. onSend only hands them to the batcher (push-batcher.ts: an id each, an in-process
 * buffer, one queue add per flush); a failure is logged and counted, and the response is never
 * affected. `close()` flushes and waits (bounded) for the queueing.
 */
export function registerHandlerPushes (fastify: FastifyInstance, delivery: Delivery, queueOn: boolean): { counters: () => HandlerPushCounters, drain: () => Promise<void> } {
  const batcher = new PushBatcher(delivery)
  const counters = batcher.counters

  // STYLE.md rule 12: per-route config is checked when the route is declared, not on first request.
  // A route with config.wechatPush gets its own two hooks, so no other route pays for them.
  fastify.addHook('onRoute', (route) => {
    const configured = (route.config as { wechatPush?: unknown } | undefined)?.wechatPush
    if (configured === undefined) return
    if (typeof configured !== 'function') {
      throw new WechatOptionsError(`route ${String(route.method)} ${route.url}: config.wechatPush must be a function (request, reply, payload) => message | message[] | null`)
    }
    if (!queueOn) throw new WechatOptionsError(`route ${String(route.method)} ${route.url}: config.wechatPush needs the queue, which is off (queue: false)`)
    route.preSerialization = [...asArray(route.preSerialization), keepPayload]
    route.onSend = [...asArray(route.onSend), configuredOnSend(configured as WechatPushConfig)]
  })

  fastify.decorateReply('wechatPush', function (this: FastifyReply, messages: SubscribeMessage | readonly SubscribeMessage[]) {
    const state = this as unknown as ReplyState
    let list = state[kPending]
    if (list === undefined) {
      list = state[kPending] = []
      // onSend takes them. A response that never goes through onSend (reply.hijack() and a raw
      // response) has them taken when its connection closes; one already out (a push from an
      // onResponse hook) or whose connection is already gone (its 'close' has been) right away.
      if (this.raw.writableEnded || this.raw.destroyed) setImmediate(takeUnsent, this)
      else this.raw.once('close', () => { takeUnsent(this) })
    }
    try {
      // (a loop, not push(...copies): spreading a very large array overflows the stack)
      for (const copy of copyMessages(messages)) list.push(copy)
    } catch (err) {
      // Array.isArray of a revoked Proxy throws: the handler's response must not become a 500.
      counters.failed++
      this.request.log.error({ reason: thrownText(err) }, 'wechat: reply.wechatPush got something that is not a message; not queued (the response was not affected)')
    }
    return this
  })

  /**
   * Queue a reply's pushes when its status is < 400, else count them skipped; once per reply. From
   * onSend (no `statusCode`) the status is the one the response goes out with (whenSent); from a
   * closed connection, the one it went out with.
   */
  function take (request: FastifyRequest, reply: FastifyReply, statusCode?: number): void {
    const state = reply as unknown as ReplyState
    const pending = state[kPending]
    if (pending === undefined) return
    // Taken once: a later onSend hook that throws makes Fastify run onSend again for its error
    // reply, and the same pushes were counted a second time (queued and skipped).
    state[kPending] = undefined
    const settle = (status: number): void => {
      if (status >= 400) counters.skipped += pending.length
      else batcher.accept(request.log, pending)
    }
    if (statusCode === undefined) whenSent(reply, settle)
    else settle(statusCode)
  }

  /**
   * Decide by the status the response went out with, once it is out: after this plugin's onSend, a
   * later onSend hook may still change the status (reply.code(429)) and a stream payload that fails
   * before its first byte becomes a 500. A client gone before any headers were written leaves the
   * status the reply had (its handler answered; the client's leaving does not cancel the push).
   */
  function whenSent (reply: FastifyReply, settle: (status: number) => void): void {
    const raw = reply.raw
    const status = (): number => raw.headersSent ? raw.statusCode : reply.statusCode
    if (raw.writableFinished || raw.destroyed) settle(status())
    else raw.once('close', () => { settle(status()) })
  }

  /**
   * Pushes onSend never saw, when the connection closes. A reply still Fastify's (not hijacked, not
   * ended) leaves them to onSend: a client gone before the handler answered does not cancel them.
   * Otherwise they go by the status the response sent; one that never sent its headers (the client
   * left a hijacked reply before it wrote anything) has no status below 400: skipped.
   */
  function takeUnsent (reply: FastifyReply): void {
    if (!reply.sent) return
    take(reply.request, reply, reply.raw.headersSent ? reply.raw.statusCode : 599)
  }

  // Hooks in callback form: an async hook costs every request a promise and a microtask turn.
  // The only hook every route runs: one symbol read when the handler pushed nothing.
  const onSend: onSendHookHandler = function (request, reply, payload, done) {
    if ((reply as unknown as ReplyState)[kPending] !== undefined) take(request, reply)
    done(null, payload)
  }
  fastify.addHook('onSend', onSend)

  // The object a handler returned, before serialisation, for config.wechatPush.
  const keepPayload: preSerializationHookHandler = function (_request, reply, payload, done) {
    (reply as unknown as ReplyState)[kPayload] = payload
    done(null, payload)
  }

  function configuredOnSend (configured: WechatPushConfig): onSendHookHandler {
    return function (request, reply, payload, done) {
      const state = reply as unknown as ReplyState
      // once per request (onSend runs again for the error reply when a later onSend hook throws)
      if (state[kConfigured] === undefined) {
        state[kConfigured] = true
        if (reply.statusCode >= 400) counters.skipped++
        else runConfigured(request, reply, configured, state[kPayload] ?? payload)
      }
      done(null, payload)
    }
  }

  /** config.wechatPush runs here, with the handler's object; a promise it returns is awaited aside. */
  function runConfigured (request: FastifyRequest, reply: FastifyReply, configured: WechatPushConfig, payload: unknown): void {
    const failed = (err: unknown): void => {
      counters.failed++
      request.log.error({ reason: thrownText(err) }, 'wechat: config.wechatPush threw; its push was not queued (the response was not affected)')
    }
    // (by the status the response goes out with, as reply.wechatPush's: whenSent)
    const accept = (messages: unknown): void => {
      const copies = copyMessages(messages)
      whenSent(reply, (status) => {
        if (status < 400) batcher.accept(request.log, copies)
        else counters.skipped += copies.length
      })
    }
    try {
      const produced = configured(request, reply, payload)
      if (produced !== null && typeof produced === 'object' && typeof (produced as Promise<unknown>).then === 'function') {
        batcher.track(Promise.resolve(produced).then((messages) => { if (messages) accept(messages) }).catch(failed))
      } else if (produced) {
        accept(produced)
      }
    } catch (err) {
      // it threw, or returned what cannot be read (a revoked Proxy makes `.then` and Array.isArray throw)
      failed(err)
    }
  }

  return { counters: () => ({ ...counters }), drain: () => batcher.drain() }
}

/**
 * The messages of a push, copied as they are now (snapshotMessage): a handler that reuses one object
 * for several pushes, or changes it after pushing, must not change what goes out. All or none: an
 * array whose reading throws half way throws here, before anything is taken.
 */
function copyMessages (messages: unknown): unknown[] {
  if (!Array.isArray(messages)) return [snapshotMessage(messages)]
  const copies: unknown[] = []
  for (const message of messages) copies.push(snapshotMessage(message))
  return copies
}

function asArray<T> (value: T | T[] | undefined): T[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value : [value]
}

declare module 'fastify' {
  interface FastifyReply {
    /** queue subscribe message(s) to go out after this response, if its status is < 400 */
    wechatPush (messages: SubscribeMessage | readonly SubscribeMessage[]): this
  }
  interface FastifyContextConfig {
    /**
     * Declarative form of reply.wechatPush: runs after the handler, with what it returned as `payload`.
     * A method signature on purpose: its parameters are then checked bivariantly, so a function whose
     * payload parameter is annotated (`(request, reply, order: Order) => ...`, `WechatPushConfig<Order>`)
     * is accepted; unannotated, the payload is `unknown`.
     */
    wechatPush? (request: FastifyRequest, reply: FastifyReply, payload: unknown): WechatPushResult | Promise<WechatPushResult>
  }
}
