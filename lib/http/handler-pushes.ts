import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, onSendHookHandler, preSerializationHookHandler } from 'fastify'
import { sleep } from '../api/backoff.js'
import type { AdmittedMessage, Delivery } from '../delivery/delivery.js'
import type { SubscribeMessage } from '../delivery/message.js'
import { newMessageId } from '../delivery/sender.js'
import { WechatOptionsError } from '../errors.js'

export type WechatPushConfig = (request: FastifyRequest, reply: FastifyReply, payload: unknown) => SubscribeMessage | SubscribeMessage[] | null | undefined | Promise<SubscribeMessage | SubscribeMessage[] | null | undefined>

const kPending = Symbol('wechatPush.pending')
const kPayload = Symbol('wechatPush.payload')
/** How long a batch of handler pushes keeps trying to reach the queue (Redis restarting, failing over). */
const RETRY_WINDOW_MS = 5 * 60_000
/** How long close() waits for pushes still trying before it gives up on them (and logs each). */
const DRAIN_MS = 10_000
/** A batch is flushed at once when it reaches this size (one BullMQ addBulk), else on the next setImmediate. */
export const FLUSH_AT = 500

interface ReplyState { [kPending]?: unknown[], [kPayload]?: unknown }

/** A push accepted in onSend: its message id is assigned there and kept through every retry. */
interface Accepted { id: string, message: unknown, log: FastifyBaseLogger }

/** Counters an operator can read (`fastify.wechat.handlerPushes()`), since the app started. */
export interface HandlerPushCounters {
  /** in the queue (and recorded) */
  queued: number
  /** not queued because the response status was >= 400 */
  skipped: number
  /** given up: invalid, no credit under `credits: 'enforce'`, a throwing config.wechatPush, or the queue unreachable for 5 minutes */
  failed: number
  /** accepted and still only in this process's memory: buffered, or retrying while the queue is unreachable */
  waiting: number
}

/**
 * Pushes triggered from route handlers (DESIGN.md `reply.wechatPush`, `config.wechatPush`): accepted
 * in onSend only when the response status is < 400, without waiting for WeChat or delaying the
 * response. onSend only gives each push its id and puts it in an in-process buffer; the buffer is
 * flushed on the next setImmediate (or at FLUSH_AT pushes), every push of the flush validated alone
 * and the valid ones queued together: one queue add and one batch of record writes for all the
 * requests of that turn of the event loop, instead of one enqueue per push. A flush that cannot
 * reach the queue is retried under the same ids for RETRY_WINDOW_MS; a failure is logged and
 * counted, and the response is never affected. `close()` flushes and waits (bounded) for it.
 */
export function registerHandlerPushes (fastify: FastifyInstance, delivery: Delivery): { counters: () => HandlerPushCounters, drain: () => Promise<void> } {
  const counters: HandlerPushCounters = { queued: 0, skipped: 0, failed: 0, waiting: 0 }
  const inflight = new Set<Promise<void>>()
  const stop = new AbortController()
  let buffer: Accepted[] = []
  let scheduled: NodeJS.Immediate | null = null

  // STYLE.md rule 12: per-route config is checked when the route is declared, not on first request.
  fastify.addHook('onRoute', (route) => {
    const configured = (route.config as { wechatPush?: unknown } | undefined)?.wechatPush
    if (configured !== undefined && typeof configured !== 'function') {
      throw new WechatOptionsError(`route ${String(route.method)} ${route.url}: config.wechatPush must be a function (request, reply, payload) => message | message[] | null`)
    }
  })

  fastify.decorateReply('wechatPush', function (this: FastifyReply, messages: SubscribeMessage | SubscribeMessage[]) {
    const state = this as unknown as ReplyState
    const list = state[kPending] ?? (state[kPending] = [])
    if (Array.isArray(messages)) list.push(...messages)
    else list.push(messages)
    return this
  })

  // Hooks in callback form: an async hook costs every request a promise and a microtask turn.
  // The object a handler returned, before serialisation, for config.wechatPush.
  const keepPayload: preSerializationHookHandler = function (request, reply, payload, done) {
    if (typeof request.routeOptions.config?.wechatPush === 'function') (reply as unknown as ReplyState)[kPayload] = payload
    done(null, payload)
  }
  fastify.addHook('preSerialization', keepPayload)

  const onSend: onSendHookHandler = function (request, reply, payload, done) {
    const state = reply as unknown as ReplyState
    const pending = state[kPending]
    const configured = request.routeOptions.config?.wechatPush
    if (pending === undefined && typeof configured !== 'function') { done(null, payload); return }
    if (reply.statusCode >= 400) {
      counters.skipped += (pending?.length ?? 0) + (typeof configured === 'function' ? 1 : 0)
      done(null, payload)
      return
    }
    if (pending !== undefined) accept(request.log, pending)
    if (typeof configured === 'function') runConfigured(request, reply, configured as WechatPushConfig, state[kPayload] ?? payload)
    done(null, payload)
  }
  fastify.addHook('onSend', onSend)

  /** config.wechatPush runs here, with the handler's object; a promise it returns is awaited aside. */
  function runConfigured (request: FastifyRequest, reply: FastifyReply, configured: WechatPushConfig, payload: unknown): void {
    const failed = (err: unknown): void => {
      counters.failed++
      request.log.error({ reason: (err as Error).message }, 'wechat: config.wechatPush threw; its push was not queued (the response was not affected)')
    }
    let produced: ReturnType<WechatPushConfig>
    try {
      produced = configured(request, reply, payload)
    } catch (err) {
      failed(err)
      return
    }
    if (produced !== null && typeof produced === 'object' && typeof (produced as Promise<unknown>).then === 'function') {
      track(Promise.resolve(produced).then((messages) => { if (messages) accept(request.log, messages) }, failed))
    } else if (produced) {
      accept(request.log, produced as SubscribeMessage | SubscribeMessage[])
    }
  }

  /** Give each push its id and buffer it for the next flush. */
  function accept (log: FastifyBaseLogger, messages: unknown): void {
    const before = buffer.length
    if (Array.isArray(messages)) {
      for (const message of messages) buffer.push({ id: newMessageId(), message, log })
    } else {
      buffer.push({ id: newMessageId(), message: messages, log })
    }
    counters.waiting += buffer.length - before
    if (buffer.length >= FLUSH_AT) flush()
    else if (scheduled === null) scheduled = setImmediate(flush)
  }

  function flush (): void {
    if (scheduled !== null) { clearImmediate(scheduled); scheduled = null }
    const all = buffer
    buffer = []
    for (let i = 0; i < all.length; i += FLUSH_AT) track(queueBatch(all.slice(i, i + FLUSH_AT)))
  }

  function track (work: Promise<void>): void {
    inflight.add(work)
    work.finally(() => inflight.delete(work)).catch(() => {})
  }

  async function queueBatch (batch: Accepted[]): Promise<void> {
    let admitted: AdmittedMessage[]
    try {
      const answer = await delivery.admit(batch, 'hook')
      for (const { index, error } of answer.refused) lost(batch[index] as Accepted, error)
      admitted = answer.admitted
    } catch (err) {
      // Only the store failing under credits: 'enforce' gets here; nothing was taken.
      for (const push of batch) lost(push, err as Error)
      return
    }
    const deadline = Date.now() + RETRY_WINDOW_MS
    for (let attempt = 1; ; attempt++) {
      try {
        await delivery.queueAdmitted(admitted)
        counters.queued += admitted.length
        counters.waiting -= admitted.length
        return
      } catch (err) {
        const retry = Date.now() < deadline && !stop.signal.aborted
        if (!retry) {
          const byId = new Map(batch.map((push) => [push.id, push]))
          for (const { record } of admitted) lost(byId.get(record.id) as Accepted, err as Error)
          await delivery.release(admitted)
          return
        }
        // The same batch, the same ids: an add that went through but lost its answer is not doubled.
        await sleep(Math.min(5000, 100 * 2 ** attempt), stop.signal)
      }
    }
  }

  function lost (push: Accepted, err: Error): void {
    counters.failed++
    counters.waiting--
    const code = (err as { code?: string }).code
    push.log.error({ messageId: push.id, reason: err.message, code }, 'wechat: a handler push could not be queued')
  }

  const drain = async (): Promise<void> => {
    const all = (async () => {
      // A config.wechatPush that resolves during the wait buffers more pushes: flush those too.
      while (buffer.length > 0 || inflight.size > 0) {
        flush()
        await Promise.allSettled([...inflight])
      }
    })()
    let timer: NodeJS.Timeout | undefined
    const done = await Promise.race([all.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), DRAIN_MS); timer.unref() })])
    clearTimeout(timer)
    if (!done) {
      // The queue is still unreachable: one last try each, then every push left is logged as lost.
      stop.abort()
      await all
    }
  }
  return { counters: () => ({ ...counters }), drain }
}

declare module 'fastify' {
  interface FastifyReply {
    /** queue subscribe message(s) to go out after this response, if its status is < 400 */
    wechatPush (messages: SubscribeMessage | SubscribeMessage[]): FastifyReply
  }
  interface FastifyContextConfig {
    /** declarative form of reply.wechatPush: runs after the handler, with what it returned */
    wechatPush?: WechatPushConfig
  }
}
