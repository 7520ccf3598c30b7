import { assertFields, assertOptionalBoolean } from './args.js'
import type { FieldNames } from './args.js'
import { MAX_WAIT_MS, SIM_ENDPOINTS } from './types.js'
import type { SimEndpoint, SimFault } from './types.js'

/** Most copies of one fault queued by one call (each is an object held until used). */
export const MAX_TIMES = 1_000_000

/** Target of `failNext`: one endpoint, or `'*'` for whichever endpoint is called next. */
export type FaultTarget = SimEndpoint | '*'

/**
 * Queues of faults, one per endpoint plus a `'*'` queue. A request takes the head of its endpoint's
 * queue first and only then the head of the `'*'` queue.
 */
export class FaultQueue {
  readonly #queues = new Map<FaultTarget, SimFault[]>()

  /**
   * Queues `times` copies of `fault` for `target`.
   * @throws TypeError on an unknown target, a bad `times` or a bad fault field
   */
  add (target: FaultTarget, fault: SimFault, times = 1): void {
    if (target !== '*' && !(SIM_ENDPOINTS as readonly string[]).includes(target)) {
      throw new TypeError(`failNext: unknown endpoint ${JSON.stringify(target)}`)
    }
    if (!Number.isInteger(times) || times < 1 || times > MAX_TIMES) throw new TypeError(`failNext: times must be an integer from 1 to ${MAX_TIMES}`)
    validate(fault)
    const queue = this.#queues.get(target) ?? []
    for (let i = 0; i < times; i++) queue.push({ ...fault })
    this.#queues.set(target, queue)
  }

  /** Removes and returns the next fault for a request to `endpoint`, if any. */
  take (endpoint: SimEndpoint): SimFault | undefined {
    return this.#queues.get(endpoint)?.shift() ?? this.#queues.get('*')?.shift()
  }

  /** How many faults are still queued for `target`, or in total when left out. */
  pending (target?: FaultTarget): number {
    if (target !== undefined) return this.#queues.get(target)?.length ?? 0
    let total = 0
    for (const queue of this.#queues.values()) total += queue.length
    return total
  }

  /** Drops every queued fault. */
  clear (): void {
    this.#queues.clear()
  }
}

const FIELDS: FieldNames<SimFault> = { errcode: true, errmsg: true, httpStatus: true, delayMs: true, drop: true, processed: true, omitMsgid: true }
const FLAGS = ['drop', 'processed', 'omitMsgid'] as const
const BODYLESS = new Set([204, 205, 304])

// A misspelt or mistyped field would queue a fault that does nothing, and the test would pass for the
// wrong reason; `{}` stays allowed: it is documented as one normal answer (an array is not: it was
// taken as `{}`).
function validate (fault: SimFault): void {
  assertFields(fault, FIELDS, 'failNext', 'fault', 'fault field')
  for (const flag of FLAGS) assertOptionalBoolean(fault[flag], 'failNext', flag)
  if (fault.httpStatus === 200 && fault.errcode === undefined && fault.errmsg === undefined) {
    throw new TypeError('failNext: httpStatus 200 alone is the normal answer; give an error status, or errcode/errmsg with it')
  }
  if (fault.errcode !== undefined && !Number.isInteger(fault.errcode)) {
    throw new TypeError('failNext: errcode must be an integer')
  }
  if (fault.errmsg !== undefined && typeof fault.errmsg !== 'string') {
    throw new TypeError('failNext: errmsg must be a string')
  }
  if (fault.httpStatus !== undefined &&
    (!Number.isInteger(fault.httpStatus) || fault.httpStatus < 200 || fault.httpStatus > 599)) {
    throw new TypeError('failNext: httpStatus must be an integer from 200 to 599')
  }
  // A fault answers a page, and these statuses cannot carry one (RFC 9110 §15.3.5, §15.3.6, §15.4.5):
  // Node drops the body but keeps its content-length, and the client reads a malformed response.
  if (BODYLESS.has(fault.httpStatus as number)) {
    throw new TypeError(`failNext: httpStatus ${fault.httpStatus} cannot carry a body; use another status`)
  }
  if (fault.delayMs !== undefined && (!Number.isFinite(fault.delayMs) || fault.delayMs < 0 || fault.delayMs > MAX_WAIT_MS)) {
    throw new TypeError(`failNext: delayMs must be a number from 0 to ${MAX_WAIT_MS}`)
  }
}
