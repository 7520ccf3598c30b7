import { setMaxListeners } from 'node:events'

/**
 * Exponential backoff with "equal jitter" within [minDelay, maxDelay] (README: the delays lie
 * between the two): retry n waits between max(minDelay, top/2) and top, top = min(maxDelay,
 * minDelay × 2^n), so a fleet that failed together does not retry together, and no retry comes
 * sooner than minDelay (half of minDelay, before).
 */
export interface BackoffOptions { minDelay: number, maxDelay: number }

export function backoffDelay (attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const top = Math.max(options.minDelay, Math.min(options.maxDelay, options.minDelay * 2 ** Math.max(1, attempt)))
  const bottom = Math.max(options.minDelay, top / 2)
  return Math.round(bottom + random() * (top - bottom))
}

/**
 * `work`, or the signal's reason as soon as it is aborted (`work` itself goes on: a token fetch or
 * a template list other callers share). Without a signal, `work` as it is.
 */
export function abortable<T> (work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const aborted = (): void => { reject(signal.reason) }
    signal.addEventListener('abort', aborted, { once: true })
    work.then((value) => {
      signal.removeEventListener('abort', aborted)
      resolve(value)
    }, (err: unknown) => {
      signal.removeEventListener('abort', aborted)
      reject(err)
    })
  })
}

/** A timer that does not keep the process alive, and that `signal` can cut short. */
export function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    timer.unref()
    function done (): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}

/**
 * An AbortController whose signal many waits listen to at once (close()'s: every send waiting for a
 * token or the template list adds one, and removes it when done): no MaxListenersExceededWarning.
 */
export function sharedAbortController (): AbortController {
  const controller = new AbortController()
  setMaxListeners(0, controller.signal)
  return controller
}
