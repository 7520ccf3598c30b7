/**
 * Checks of the arguments tests pass to the simulator (internal). A misspelt or mistyped control
 * argument would otherwise be ignored and the test would pass for the wrong reason, so each is refused
 * with a TypeError that names it.
 */

/** The field names of an options type, listed once so the compiler keeps the list complete. */
export type FieldNames<T> = Readonly<Record<keyof Required<T>, true>>

/** Whether a value is a plain object (not null, not an array). */
export function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * `value` is a plain object with only the `known` keys.
 * @param where the call named in the message, e.g. `'createSimulator'`
 * @param what what the object is, e.g. `'options'`
 * @param kind what one key is called in the message, e.g. `'option'`
 * @throws TypeError naming the first unknown key
 */
export function assertFields (value: unknown, known: Readonly<Record<string, true>>, where: string, what: string, kind: string): void {
  if (!isPlainObject(value)) throw new TypeError(`${where}: ${what} must be an object`)
  for (const key of Object.keys(value)) {
    if (!Object.hasOwn(known, key)) throw new TypeError(`${where}: unknown ${kind} ${JSON.stringify(key)}`)
  }
}

/** `value` is undefined or a boolean (not `'false'`, which is truthy). */
export function assertOptionalBoolean (value: unknown, where: string, name: string): void {
  if (value !== undefined && typeof value !== 'boolean') throw new TypeError(`${where}: ${name} must be a boolean`)
}

/** `value` is undefined or a non-empty string. */
export function assertOptionalString (value: unknown, where: string, name: string): void {
  if (value !== undefined && (typeof value !== 'string' || value === '')) throw new TypeError(`${where}: ${name} must be a non-empty string`)
}
