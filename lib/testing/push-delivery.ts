import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request as httpRequest } from 'undici'

/** How long WeChat waits for the app's answer to one push attempt, in ms (WECHAT.md §6.5). */
export const PUSH_TIMEOUT_MS = 5000
/** Attempts per push, the first one included (WECHAT.md §6.5: "retries, 3 times in total"). */
export const PUSH_ATTEMPTS = 3
/**
 * Pause between two attempts, in ms. WECHAT.md gives no interval (only that WeChat drops the connection
 * after 5 s and tries again), so this is the simulator's choice: short, but long enough that an app
 * restarting a dependency has a moment before the next attempt.
 */
export const PUSH_RETRY_DELAY_MS = 1000

/** Timing of push attempts (internal; set by `pushTimeoutMs` and `pushRetryDelayMs`). */
export interface PushTiming {
  timeoutMs: number
  retryDelayMs: number
}

/** One attempt's outcome. `statusCode` 0 means no answer; `error` then says why. */
export interface AttemptResult {
  statusCode: number
  body: string
  error?: 'timeout' | 'connection' | 'closed'
}

/** One POST to make, rebuilt per attempt (a fresh nonce and timestamp, the same content). */
export interface AttemptRequest {
  url: string
  body: string
  contentType: string
}

/**
 * Whether WeChat takes the answer as receipt and stops retrying (WECHAT.md §6.5): HTTP 200 whose body
 * is exactly `success` or empty. Anything else (another status, 204 included, another body, no
 * answer) is retried.
 */
export function isReceipt (result: AttemptResult): boolean {
  return result.statusCode === 200 && (result.body === 'success' || result.body === '')
}

/**
 * Delivers pushes as WeChat does: each attempt is cut off after `timeoutMs`, and a push is tried up to
 * `PUSH_ATTEMPTS` times until the app acknowledges it. Closing (the simulator's abort signal) stops
 * every pending attempt and pause at once.
 */
export class PushDelivery {
  readonly #agent = new Agent()
  readonly #timing: PushTiming
  readonly #closing: AbortSignal

  constructor (timing: PushTiming, closing: AbortSignal) {
    this.#timing = timing
    this.#closing = closing
  }

  /**
   * Tries `build()` up to `PUSH_ATTEMPTS` times, until `acknowledged` (isReceipt, or a passive reply the
   * push allows); `onAttempt` sees every attempt (for the pushes log).
   * @returns the last attempt's outcome (never throws for network failures)
   */
  async deliver (build: () => AttemptRequest, onAttempt: (result: AttemptResult, attempt: number) => void, acknowledged: (result: AttemptResult) => boolean = isReceipt): Promise<AttemptResult> {
    let result: AttemptResult = { statusCode: 0, body: '', error: 'closed' }
    for (let attempt = 1; attempt <= PUSH_ATTEMPTS; attempt++) {
      if (attempt > 1) {
        try {
          await sleep(this.#timing.retryDelayMs, undefined, { signal: this.#closing })
        } catch {
          return result // closing: WeChat is gone, no more attempts
        }
      }
      result = await this.#attempt(build())
      onAttempt(result, attempt)
      if (acknowledged(result) || result.error === 'closed') return result
    }
    return result
  }

  /** One GET (the URL check, §6.2): cut off after `timeoutMs` like a push attempt, never retried. */
  async get (url: string): Promise<AttemptResult> {
    return this.#attempt({ url }, 'GET')
  }

  async close (): Promise<void> {
    await this.#agent.close()
  }

  async #attempt (request: AttemptRequest | { url: string }, method: 'GET' | 'POST' = 'POST'): Promise<AttemptResult> {
    if (this.#closing.aborted) return { statusCode: 0, body: '', error: 'closed' }
    const timeout = new AbortController()
    const timer = setTimeout(() => { timeout.abort() }, this.#timing.timeoutMs)
    timer.unref()
    try {
      const response = await httpRequest(request.url, {
        method,
        ...('body' in request ? { headers: { 'content-type': request.contentType }, body: request.body } : {}),
        dispatcher: this.#agent,
        signal: AbortSignal.any([this.#closing, timeout.signal])
      })
      // The body counts towards the 5 s too: the answer is complete only when it has been read.
      return { statusCode: response.statusCode, body: await response.body.text() }
    } catch {
      if (this.#closing.aborted) return { statusCode: 0, body: '', error: 'closed' }
      return { statusCode: 0, body: '', error: timeout.signal.aborted ? 'timeout' : 'connection' }
    } finally {
      clearTimeout(timer)
    }
  }
}
