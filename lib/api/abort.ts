import { setMaxListeners } from 'node:events'

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

/**
 * An AbortController whose signal many waits listen to at once (close()'s: every send waiting for a
 * token or the template list adds one, and removes it when done): no MaxListenersExceededWarning.
 */
export function sharedAbortController (): AbortController {
  const controller = new AbortController()
  setMaxListeners(0, controller.signal)
  return controller
}
