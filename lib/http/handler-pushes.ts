import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { sleep } from '../api/backoff.js'
import type { Delivery } from '../delivery/delivery.js'
import type { SubscribeMessage } from '../delivery/message.js'
import { WechatOptionsError } from '../errors.js'

export type WechatPushConfig = (request: FastifyRequest, reply: FastifyReply, payload: unknown) => SubscribeMessage | SubscribeMessage[] | null | undefined | Promise<SubscribeMessage | SubscribeMessage[] | null | undefined>

const kPending = Symbol('wechatPush.pending')
const kPayload = Symbol('wechatPush.payload')
/** How long a handler push keeps trying to reach the queue (Redis restarting, failing over). */
const RETRY_WINDOW_MS = 5 * 60_000
/** How long close() waits for pushes still trying before it gives up on them (and logs each). */
const DRAIN_MS = 10_000

interface ReplyState { [kPending]?: unknown[], [kPayload]?: unknown }

/** Counters an operator can read (`fastify.wechat.handlerPushes()`). */
export interface HandlerPushCounters { queued: number, skipped: number, failed: number }

/**
 * Pushes triggered from route handlers (DESIGN.md `reply.wechatPush`, `config.wechatPush`): queued
 * in onSend only when the response status is < 400, without waiting for WeChat or delaying the
 * response. Queueing runs in the background with a few retries; a failure is logged and counted,
 * and the response goes out unchanged. `close()` waits for queueing still under way.
 */
export function registerHandlerPushes (fastify: FastifyInstance, delivery: Delivery): { counters: HandlerPushCounters, drain: () => Promise<void> } {
  const counters: HandlerPushCounters = { queued: 0, skipped: 0, failed: 0 }
  const inflight = new Set<Promise<void>>()
  const stop = new AbortController()

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

  // The object a handler returned, before serialisation, for config.wechatPush.
  fastify.addHook('preSerialization', async (request, reply, payload) => {
    if (typeof request.routeOptions.config?.wechatPush === 'function') (reply as unknown as ReplyState)[kPayload] = payload
    return payload
  })

  fastify.addHook('onSend', async (request, reply, payload) => {
    const state = reply as unknown as ReplyState
    const configured = request.routeOptions.config?.wechatPush
    const pending = state[kPending]
    if (!pending && typeof configured !== 'function') return payload
    if (reply.statusCode >= 400) {
      counters.skipped += (pending?.length ?? 0) + (typeof configured === 'function' ? 1 : 0)
      return payload
    }
    const work = queueInBackground(request, reply, pending ?? [], configured, state[kPayload] ?? payload)
    inflight.add(work)
    work.finally(() => inflight.delete(work)).catch(() => {})
    return payload
  })

  async function queueInBackground (request: FastifyRequest, reply: FastifyReply, pending: unknown[], configured: unknown, payload: unknown): Promise<void> {
    const messages = [...pending]
    if (typeof configured === 'function') {
      try {
        const produced = await (configured as WechatPushConfig)(request, reply, payload)
        if (Array.isArray(produced)) messages.push(...produced)
        else if (produced) messages.push(produced)
      } catch (err) {
        counters.failed++
        request.log.error({ reason: (err as Error).message }, 'wechat: config.wechatPush threw; its push was not queued (the response was not affected)')
      }
    }
    // One enqueue per message: an invalid message (or a failing one) must not take the others with it.
    await Promise.all(messages.map((message) => queueOne(request, message)))
  }

  async function queueOne (request: FastifyRequest, message: unknown): Promise<void> {
    const deadline = Date.now() + RETRY_WINDOW_MS
    for (let attempt = 1; ; attempt++) {
      try {
        await delivery.enqueue(message, {}, 'hook')
        counters.queued++
        return
      } catch (err) {
        const code = (err as { code?: string }).code
        const retry = code === 'FST_WECHAT_QUEUE' && Date.now() < deadline && !stop.signal.aborted
        if (!retry) {
          counters.failed++
          request.log.error({ reason: (err as Error).message, code }, 'wechat: a handler push could not be queued')
          return
        }
        await sleep(Math.min(5000, 100 * 2 ** attempt), stop.signal)
      }
    }
  }

  const drain = async (): Promise<void> => {
    const all = Promise.allSettled([...inflight])
    let timer: NodeJS.Timeout | undefined
    const done = await Promise.race([all.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), DRAIN_MS); timer.unref() })])
    clearTimeout(timer)
    if (!done) {
      // The queue is still unreachable: one last try each, then every push left is logged as lost.
      stop.abort()
      await all
    }
  }
  return { counters, drain }
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
