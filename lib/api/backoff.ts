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
