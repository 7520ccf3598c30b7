/**
 * Exponential backoff with "equal jitter": half the step is fixed, half random, so a fleet that
 * failed together does not retry together, yet no retry comes immediately.
 */
export interface BackoffOptions { minDelay: number, maxDelay: number }

export function backoffDelay (attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const step = Math.min(options.maxDelay, options.minDelay * 2 ** Math.max(0, attempt - 1))
  return Math.round(step / 2 + random() * step / 2)
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
