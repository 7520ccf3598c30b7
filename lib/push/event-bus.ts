/**
 * In-process dispatch of inbound pushes to handlers (DESIGN.md "fastify.wechat.on"). Two stages
 * (WECHAT.md §6.5: persist, then answer, then process):
 * - applyInternal: the plugin's own effects (credits, delivery receipts), awaited by the push route
 *   BEFORE it answers, so a push whose effects could not be stored is not acknowledged and WeChat
 *   retries it.
 * - emit: user handlers, after the route answered `success`: no handler can slow the answer down,
 *   and no handler error (the user's bug, logged) can reach WeChat or crash the app.
 * The plugin's lifecycle events (lib/lifecycle.ts) reach their handlers the same way.
 */
import type { FastifyBaseLogger } from 'fastify'
import { LIFECYCLE_EVENT_NAMES } from '../lifecycle.js'
import type { EmitLifecycle, LifecycleEventName } from '../lifecycle.js'
import type { ChangeEvent, PopupEvent, PushMessage, SentEvent } from './events.js'

/** Payload type per event name. `'event'` receives every push; other names get `PushMessage`. */
export interface PushEventMap {
  subscribe_msg_popup_event: PopupEvent
  subscribe_msg_change_event: ChangeEvent
  subscribe_msg_sent_event: SentEvent
  event: PushMessage
}

/** A user handler: may be async; what it returns is ignored, what it throws is logged. */
export type PushHandler<T = PushMessage> = (payload: T) => unknown

/** On close, running handlers get this long to finish (a handler is not retried: WeChat got its answer). */
export const EVENTS_DRAIN_MS = 5000

/** The catch-all name: its handlers receive every push. */
export const ALL_EVENTS = 'event'

/** Compiles only while every lifecycle name has a ':', which isPushEventName relies on. */
type WithColon<T extends `${string}:${string}`> = T
export type LifecycleNameWithColon = WithColon<LifecycleEventName>

/**
 * Whether a push's Event may reach the handlers of its own name. Lifecycle events share the handler
 * table and every one of their names has a ':' (lib/lifecycle.ts), which WeChat's event names never
 * do: a signed push named 'message:delivered' must not reach lifecycle handlers with a PushMessage.
 * It still reaches the catch-all.
 */
function isPushEventName (name: unknown): name is string {
  return typeof name === 'string' && name !== ALL_EVENTS && !name.includes(':')
}

export class PushEventBus {
  readonly #handlers = new Map<string, Array<PushHandler<never>>>()
  readonly #internal: Array<PushHandler<PushMessage>> = []
  readonly #inFlight = new Set<Promise<void>>()
  readonly #log: FastifyBaseLogger

  constructor (log: FastifyBaseLogger) {
    this.#log = log
  }

  /** Subscribe to one push `Event` name (WECHAT.md §7), or to `'event'` for every push. */
  on<K extends keyof PushEventMap>(event: K, handler: PushHandler<PushEventMap[K]>): void
  on (event: string, handler: PushHandler<PushMessage>): void
  on (event: string, handler: PushHandler<never>): void {
    if (typeof event !== 'string' || event === '') throw new TypeError('wechat.on: the event name must be a non-empty string')
    if (typeof handler !== 'function') throw new TypeError('wechat.on: the handler must be a function')
    // WeChat's Event names have no ':'; ours all do: a misspelt lifecycle name would never fire
    if (event.includes(':') && !(LIFECYCLE_EVENT_NAMES as readonly string[]).includes(event)) {
      throw new TypeError(`wechat.on: '${event}' is not a lifecycle event (${LIFECYCLE_EVENT_NAMES.join(', ')})`)
    }
    const list = this.#handlers.get(event) ?? []
    list.push(handler)
    this.#handlers.set(event, list)
  }

  /**
   * Plugin-internal hooks (delivery receipts, credits) that run, in order, in applyInternal: by the
   * time user code sees a sent event, the message record already says `delivered`.
   */
  onInternal (handler: PushHandler<PushMessage>): void {
    this.#internal.push(handler)
  }

  /**
   * Run the internal hooks now, in order; rejects with the first failure (the push must not be
   * acknowledged then). Counted as pending, so close waits for the store writes under way.
   */
  applyInternal (message: PushMessage): Promise<void> {
    const run = (async () => { for (const hook of this.#internal) await hook(message) })()
    this.#track(run.catch(() => {}))
    return run
  }

  /**
   * Run every matching user handler, starting on the next turn of the event loop (after the
   * caller's response is written). Counted as pending at once, so a close right after the answer
   * still drains it. Never rejects.
   */
  emit (message: PushMessage): Promise<void> {
    const run = new Promise((resolve) => { setImmediate(resolve) }).then(() => this.#dispatch(message))
    this.#track(run)
    return run
  }

  /**
   * A lifecycle event (lib/lifecycle.ts) to the handlers of its name only, like a push: on
   * the next turn, errors logged. Nothing at all happens when no handler listens for it, so the send
   * path pays for events only in apps that use them.
   */
  emitLifecycle: EmitLifecycle = (name, payload) => {
    const handlers = this.#handlers.get(name)
    if (handlers === undefined) return
    const event = payload()
    const run = new Promise((resolve) => { setImmediate(resolve) }).then(() => Promise.all(handlers.map((handler) =>
      this.#call(handler as PushHandler<unknown>, event, name, 'lifecycle')))).then(() => {})
    this.#track(run)
  }

  /** `run` must never reject. */
  #track (run: Promise<void>): void {
    this.#inFlight.add(run)
    run.finally(() => this.#inFlight.delete(run))
  }

  /** How many dispatches are still running. */
  get pending (): number {
    return this.#inFlight.size
  }

  /**
   * Wait for running dispatches (so internal hooks can finish their store writes before the store
   * closes), but at most `maxMs`: a handler that never settles must not hang `app.close()`.
   */
  async drain (maxMs: number): Promise<void> {
    if (this.#inFlight.size === 0) return
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, maxMs)
      timer.unref()
    })
    await Promise.race([Promise.allSettled([...this.#inFlight]), deadline])
    clearTimeout(timer)
  }

  /** The end of close's wait for running dispatches, set by the first drainForClose(). */
  #closeDeadline: number | undefined

  /**
   * drain() for app.close(): the push endpoint's onClose and the plugin's each drain (the second for
   * lifecycle events the queue's close emitted), within one budget of `maxMs` in all, so a handler
   * that never settles holds close() `maxMs`, not once per part (an audit measured 10 s for 5).
   */
  async drainForClose (maxMs: number): Promise<void> {
    this.#closeDeadline ??= Date.now() + maxMs
    await this.drain(Math.max(0, this.#closeDeadline - Date.now()))
  }

  async #dispatch (message: PushMessage): Promise<void> {
    const names = isPushEventName(message.Event) ? [message.Event, ALL_EVENTS] : [ALL_EVENTS]
    // User handlers run side by side: one slow handler does not hold the others back.
    await Promise.all(names.flatMap((name) => (this.#handlers.get(name) ?? []).map((handler) =>
      this.#call(handler as PushHandler<PushMessage>, message, name))))
  }

  async #call<T> (handler: PushHandler<T>, payload: T, event: string, what = 'push'): Promise<void> {
    try {
      await handler(payload)
    } catch (err) {
      this.#log.error({ err, event }, `wechat: ${what} event handler failed`)
    }
  }
}
