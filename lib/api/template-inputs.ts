import { invalidArgument } from '../errors.js'
import type { InvalidMessageFields } from '../errors.js'
import type { AddTemplateInput, PublicTitlesQuery } from './templates.js'

/**
 * The arguments of the template API (WECHAT.md §4), checked before any call: a bad one is
 * FST_WECHAT_INVALID_MESSAGE (400) naming every problem, never a call WeChat would refuse.
 */

export const MAX_PUBLIC_TITLES_LIMIT = 30
export const MAX_SCENE_DESC = 15

type Violation = InvalidMessageFields['violations'][number]

/** WECHAT.md §4.5: "new one-time" titles take an empty kidList */
export function isNewOneTimeTid (tid: number): boolean {
  return tid >= 10_000_001 && tid < 20_000_000
}

/**
 * A misspelt option (`scenedesc`, `Limit`) is refused like a bad value: silently dropped, the call
 * would do something else than asked (a template without its scene description, 30 titles not 1).
 */
export function unknownKeys (input: object, known: readonly string[], what: string): Violation[] {
  return Object.keys(input).filter((key) => !known.includes(key))
    .map((key) => ({ key, rule: 'unknown', message: `${key} is not an option of ${what} (it takes ${known.join(', ')})` }))
}

/** `templates.list(options?)`: `{ refresh?: boolean }`. */
export function checkListOptions (options: unknown): boolean {
  if (options === undefined || options === null) return false
  if (typeof options !== 'object' || Array.isArray(options)) throw invalidArgument([{ key: 'options', rule: 'type', message: 'list takes { refresh?: boolean }' }])
  const violations = unknownKeys(options, ['refresh'], 'list')
  const { refresh } = options as { refresh?: unknown }
  if (refresh !== undefined && typeof refresh !== 'boolean') violations.push({ key: 'refresh', rule: 'type', message: 'refresh must be a boolean' })
  if (violations.length > 0) throw invalidArgument(violations)
  return refresh === true
}

function isPositiveInteger (value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0
}

export function checkTid (tid: unknown, key: string): number {
  const n = typeof tid === 'string' && /^\d{1,15}$/.test(tid) ? Number(tid) : tid
  if (!isPositiveInteger(n)) throw invalidArgument([{ key, rule: 'type', message: `${key} must be a positive integer (a public title id from publicTitles())` }])
  return n
}

export function checkTitlesQuery (query: PublicTitlesQuery): { ids: number[], start: number, limit: number } {
  const violations: Violation[] = []
  if (query === null || typeof query !== 'object') throw invalidArgument([{ key: 'query', rule: 'type', message: 'publicTitles takes { ids, start?, limit? }' }])
  violations.push(...unknownKeys(query, ['ids', 'start', 'limit'], 'publicTitles'))
  const { ids, start = 0, limit = MAX_PUBLIC_TITLES_LIMIT } = query
  if (!Array.isArray(ids) || ids.length === 0 || ids.length > 100 || !ids.every(isPositiveInteger)) {
    violations.push({ key: 'ids', rule: 'type', message: 'ids must be a non-empty array of category ids (positive integers, from categories())' })
  }
  if (!Number.isSafeInteger(start) || start < 0) violations.push({ key: 'start', rule: 'range', message: 'start must be an integer >= 0' })
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PUBLIC_TITLES_LIMIT) {
    violations.push({ key: 'limit', rule: 'range', message: `limit must be an integer from 1 to ${MAX_PUBLIC_TITLES_LIMIT}` })
  }
  if (violations.length > 0) throw invalidArgument(violations)
  return { ids, start, limit }
}

export function checkAddInput (input: AddTemplateInput): { tid: number, kidList: number[], sceneDesc?: string } {
  if (input === null || typeof input !== 'object') throw invalidArgument([{ key: 'template', rule: 'type', message: 'add takes { tid, kidList, sceneDesc? }' }])
  const violations: Violation[] = unknownKeys(input, ['tid', 'kidList', 'sceneDesc'], 'add')
  let tid = 0
  try {
    tid = checkTid(input.tid, 'tid')
  } catch (err) {
    violations.push(...(err as { violations: Violation[] }).violations)
  }
  const kidList = input.kidList ?? []
  if (!Array.isArray(kidList) || !kidList.every(isPositiveInteger)) {
    violations.push({ key: 'kidList', rule: 'type', message: 'kidList must be an array of keyword ids (positive integers, from publicKeywords())' })
  } else if (tid > 0 && isNewOneTimeTid(tid)) {
    if (kidList.length > 0) violations.push({ key: 'kidList', rule: 'size', message: `kidList must be empty for a new one-time title (tid ${tid}): its keywords are fixed` })
  } else if (kidList.length < 2 || kidList.length > 5) {
    violations.push({ key: 'kidList', rule: 'size', message: `kidList must hold 2 to 5 keyword ids (got ${kidList.length})` })
  } else if (new Set(kidList).size !== kidList.length) {
    violations.push({ key: 'kidList', rule: 'unique', message: 'kidList must not repeat a keyword id' })
  }
  const { sceneDesc } = input
  if (sceneDesc !== undefined && (typeof sceneDesc !== 'string' || [...sceneDesc].length > MAX_SCENE_DESC)) {
    violations.push({ key: 'sceneDesc', rule: 'maxLength', message: `sceneDesc must be a string of at most ${MAX_SCENE_DESC} characters` })
  }
  if (violations.length > 0) throw invalidArgument(violations)
  return { tid, kidList, ...(sceneDesc === undefined ? {} : { sceneDesc }) }
}
