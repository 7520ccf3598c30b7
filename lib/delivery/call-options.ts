import { invalidArgument, thrownText } from '../errors.js'

const MAX_KEY_LENGTH = 200
const MAX_DELAY_MS = 30 * 86_400_000

/**
 * The options of `send()` and `enqueue()`, checked like a message: a wrong type or an unknown key is
 * FST_WECHAT_INVALID_MESSAGE before anything happens. An unknown key is refused rather than ignored
 * because the likely one is a misspelt `idempotencyKey`, which would quietly allow a second message.
 */
export function sendOptions (options: unknown): { key?: string, signal?: AbortSignal } {
  if (options === undefined) return {}
  const o = readOptions(options, ['idempotencyKey', 'signal'])
  const signal = o.signal
  if (signal !== undefined && !isAbortSignal(signal)) {
    throw invalidArgument([{ key: 'signal', rule: 'type', message: 'signal must be an AbortSignal' }])
  }
  return { key: checkKey(o.idempotencyKey), signal }
}

export function enqueueOptions (options: unknown): { key?: string, delay: number } {
  if (options === undefined) return { delay: 0 }
  const o = readOptions(options, ['idempotencyKey', 'delay'])
  // (undefined is "not given"; null is a wrong type, as it is for idempotencyKey)
  const delay = o.delay === undefined ? 0 : o.delay
  if (typeof delay !== 'number' || !Number.isInteger(delay) || delay < 0 || delay > MAX_DELAY_MS) {
    throw invalidArgument([{ key: 'delay', rule: 'range', message: 'delay must be a whole number of ms between 0 and 30 days' }])
  }
  return { key: checkKey(o.idempotencyKey), delay }
}

/**
 * The known options, read once: an unknown key is refused, and options that cannot be read (a getter
 * or a Proxy trap that throws, a revoked Proxy) are refused with the same coded error, not with
 * whatever they threw.
 */
function readOptions (options: unknown, known: readonly string[]): Record<string, unknown> {
  let names: string[] | undefined
  const read: Record<string, unknown> = {}
  try {
    if (options !== null && typeof options === 'object' && !Array.isArray(options)) {
      names = Object.keys(options)
      for (const name of known) read[name] = (options as Record<string, unknown>)[name]
    }
  } catch (err) {
    throw invalidArgument([{ key: 'options', rule: 'type', message: `options could not be read (${thrownText(err)})` }])
  }
  if (names === undefined) throw invalidArgument([{ key: 'options', rule: 'type', message: `options must be an object ({ ${known.join(', ')} })` }])
  for (const name of names) {
    if (!known.includes(name)) throw invalidArgument([{ key: name, rule: 'unknown', message: `${name} is not an option here (expected ${known.join(' or ')})` }])
  }
  return read
}

/** A real AbortSignal: `instanceof` alone lets through an object made from its prototype, whose `aborted` throws. */
function isAbortSignal (signal: unknown): signal is AbortSignal {
  if (!(signal instanceof AbortSignal)) return false
  try {
    return typeof signal.aborted === 'boolean'
  } catch {
    return false
  }
}

function checkKey (key: unknown): string | undefined {
  if (key === undefined) return undefined
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw invalidArgument([{ key: 'idempotencyKey', rule: 'type', message: `idempotencyKey must be a string of 1-${MAX_KEY_LENGTH} characters` }])
  }
  // A lone surrogate has no UTF-8 form: Redis would store U+FFFD in its place, so two different keys
  // became one there (and stayed two in memory).
  if (!(key as string & { isWellFormed (): boolean }).isWellFormed()) {
    throw invalidArgument([{ key: 'idempotencyKey', rule: 'type', message: 'idempotencyKey must be well-formed Unicode (no lone surrogate)' }])
  }
  return key
}

/** The options of `getToken()`, checked as send's are: whether to force a refresh. */
export function getTokenOptions (options: unknown): boolean {
  if (options === undefined) return false
  const { forceRefresh } = readOptions(options, ['forceRefresh'])
  if (forceRefresh !== undefined && typeof forceRefresh !== 'boolean') {
    throw invalidArgument([{ key: 'forceRefresh', rule: 'type', message: 'forceRefresh must be a boolean' }])
  }
  return forceRefresh === true
}
