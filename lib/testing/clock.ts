import type { ClockLike } from './types.js'

/**
 * The simulator's clock, in epoch milliseconds. On its own it is frozen: time moves only through
 * `advance()` and `set()`, so token lifetimes are deterministic in tests. Built around a user clock,
 * it reads that clock and forwards `advance`/`set` to it (and throws when the user clock lacks them).
 */
export class SimulatorClock {
  #time: number
  readonly #source: ClockLike | undefined

  /**
   * @param start epoch milliseconds to start at (default `Date.now()`), or a clock to wrap
   */
  constructor (start: number | ClockLike = Date.now()) {
    if (typeof start === 'number') {
      assertTime(start, 'start')
      this.#time = start
      this.#source = undefined
    } else {
      this.#time = 0
      this.#source = start
    }
  }

  /** Current simulated time, epoch milliseconds. */
  now (): number {
    return this.#source === undefined ? this.#time : this.#source.now()
  }

  /**
   * Moves the clock forward.
   * @param ms milliseconds, >= 0
   * @returns the new time
   * @throws when wrapping a user clock that has no `advance`
   */
  advance (ms: number): number {
    assertTime(ms, 'ms')
    if (this.#source !== undefined) {
      if (typeof this.#source.advance !== 'function') {
        throw new Error('SimulatorClock: the clock passed to createSimulator has no advance(); move it yourself')
      }
      this.#source.advance(ms)
    } else {
      this.#time += ms
    }
    return this.now()
  }

  /**
   * Sets the clock.
   * @param ms epoch milliseconds
   * @throws when wrapping a user clock that has no `set`
   */
  set (ms: number): void {
    assertTime(ms, 'ms')
    if (this.#source !== undefined) {
      if (typeof this.#source.set !== 'function') {
        throw new Error('SimulatorClock: the clock passed to createSimulator has no set(); move it yourself')
      }
      this.#source.set(ms)
    } else {
      this.#time = ms
    }
  }
}

function assertTime (ms: number, name: string): void {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new TypeError(`SimulatorClock: ${name} must be a finite number >= 0`)
  }
}
