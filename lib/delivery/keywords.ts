// Keyword value validation shared by the plugin (`validation: 'strict' | 'truncate' | 'off'`) and the
// WeChat simulator (which answers 47003 for the same violations). The per-type rules live in
// keyword-rules.ts; this module maps template keys to types and implements the truncate-mode repair.

import {
  codePointLength,
  HAN,
  KEYWORD_LIMITS,
  KEYWORD_TYPES,
  NAME_HAN_MAX_LENGTH,
  RULES,
  type KeywordCheckOptions,
  type KeywordType
} from './keyword-rules.js'

export {
  AMOUNT_MAX_INTEGER_DIGITS,
  KEYWORD_LIMITS,
  KEYWORD_TYPES,
  NAME_HAN_MAX_LENGTH,
  SHORT_THING_LOOSE_MAX,
  type KeywordCheckOptions,
  type KeywordType
} from './keyword-rules.js'

export interface KeywordViolation {
  key: string
  /** Short machine id: `empty`, or `<type>.<rule>` such as `thing.maxLength` or `time.format`. */
  rule: string
  /** Human-readable, starts with the key: `thing3 must be at most 20 characters (got 23)`. */
  message: string
}

export interface KeywordFix {
  value: string
  /** What was changed, human-readable; empty when the value was already valid. */
  changes: string[]
}

const KEY = /^[a-z_]+\d+$/
// Lazy type part: `character_string12` splits into `character_string` + `12` (WECHAT.md §3: strip the
// trailing digits; splitting on `_` would break the types that contain underscores).
const KEY_PARTS = /^([a-z_]+?)(\d+)$/
const TYPES: ReadonlySet<string> = new Set(KEYWORD_TYPES)

interface KeyInfo { keyword: boolean, type: KeywordType | undefined }

// Every send asks about the same few template keys: what the two patterns say of a key is kept
// (bounded, and only for key-sized strings, since keys may come from a request).
const KEY_INFO = new Map<string, KeyInfo>()
const KEY_INFO_CAP = 1024
const KEY_INFO_MAX_KEY_LENGTH = 64

function keyInfo (key: string): KeyInfo {
  const cached = KEY_INFO.get(key)
  if (cached !== undefined) return cached
  const m = KEY_PARTS.exec(key)
  const info: KeyInfo = { keyword: KEY.test(key), type: m !== null && TYPES.has(m[1]) ? m[1] as KeywordType : undefined }
  if (key.length <= KEY_INFO_MAX_KEY_LENGTH) {
    if (KEY_INFO.size >= KEY_INFO_CAP) KEY_INFO.clear()
    KEY_INFO.set(key, info)
  }
  return info
}

/** Whether `key` has the `type + index` shape of real template keys (`thing1`, `phone_number4`). */
export function isKeywordKey (key: string): boolean {
  return keyInfo(key).keyword
}

/** The keyword type of a template key, or undefined for a key without an index or of an unknown type. */
export function keywordType (key: string): KeywordType | undefined {
  return keyInfo(key).type
}

// The docs type `value` as `any` and WeChat takes numbers (WECHAT.md §2.1), so a number reaching us
// from JSON is judged by its text; anything else (null, objects) counts as missing, which WeChat reports
// as "is empty".
function asString (value: unknown): string {
  if (typeof value === 'string') return value
  return typeof value === 'number' || typeof value === 'bigint' ? String(value) : ''
}

/**
 * Check one keyword value against WECHAT.md §3. Returns the first violation, or null when the value is
 * acceptable. Keys of unknown type are only checked for being non-empty, since WeChat rejects empty
 * values of every type with 47003 "is empty" (§2.1).
 */
export function checkKeyword (key: string, value: string, opts: KeywordCheckOptions = {}): KeywordViolation | null {
  const text = asString(value)
  if (text.trim() === '') return { key, rule: 'empty', message: `${key} must not be empty` }
  const type = keywordType(key)
  if (type === undefined) return null
  const failure = RULES[type](text, opts)
  return failure === null ? null : { key, rule: `${type}.${failure[0]}`, message: `${key} ${failure[1]}` }
}

// Types whose value is free text, so a shortened value still says most of what was meant. Cutting a
// number, amount, phone, plate, order id (character_string) or time would send wrong data that looks
// right, which is worse than failing the send.
const CUTTABLE: ReadonlySet<KeywordType> = new Set<KeywordType>(['thing', 'short_thing', 'name', 'phrase', 'letter', 'symbol'])

function cutLimit (type: KeywordType, value: string): number {
  if (type === 'name') return HAN.test(value) ? NAME_HAN_MAX_LENGTH : KEYWORD_LIMITS.name
  return KEYWORD_LIMITS[type as keyof typeof KEYWORD_LIMITS]
}

// A line break or tab usually separates words, so it becomes one space; other control characters carry
// no text and are dropped. Symbol forbids both (§3, bizsend wording) and no type needs them.
const BREAKS = / *[\t\n\v\f\r\u0085\u2028\u2029]+ */g
const OTHER_CONTROL = /\p{Cc}/gu
// Plates are often written 京A·12345 or 京A 12345; the separator is not part of the plate (§3 car_number).
const PLATE_SEPARATORS = /[\s·•・-]/g

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' })

/**
 * The longest prefix of whole user-perceived characters (graphemes) that holds at most `limit`
 * code points (WeChat counts code points, WECHAT.md §3). Cutting at a code point could leave a
 * family emoji with a dangling joiner, or drop a combining accent from its letter; never a lone
 * surrogate either way.
 */
export function cutToGraphemes (text: string, limit: number): string {
  let out = ''
  let used = 0
  for (const { segment } of graphemes.segment(text)) {
    const size = codePointLength(segment)
    if (used + size > limit) break
    out += segment
    used += size
  }
  // One cluster longer than the whole limit (a letter under 25 combining marks): cut at code points
  // rather than drop the value.
  return out === '' ? [...text].slice(0, limit).join('').trimEnd() : out.trimEnd()
}

/**
 * Repair a value for `validation: 'truncate'`: remove control characters, trim, drop plate separators
 * and cut free-text types to their limit. Returns null when the value cannot be made valid without
 * guessing (empty, malformed date, letters in a number, value not in the enum list, too-long number…).
 * The returned value always passes checkKeyword.
 */
export function fixKeyword (key: string, value: string, opts: KeywordCheckOptions = {}): KeywordFix | null {
  const changes: string[] = []
  let text = asString(value)

  const cleaned = text.replace(BREAKS, ' ').replace(OTHER_CONTROL, '')
  if (cleaned !== text) changes.push('removed control characters')
  text = cleaned

  const trimmed = text.trim()
  if (trimmed !== text) changes.push('trimmed whitespace')
  text = trimmed

  const type = keywordType(key)
  if (type === 'car_number') {
    const joined = text.replace(PLATE_SEPARATORS, '')
    if (joined !== text) changes.push('removed separators')
    text = joined
  }
  if (type !== undefined && CUTTABLE.has(type)) {
    const limit = cutLimit(type, text)
    if (codePointLength(text) > limit) {
      text = cutToGraphemes(text, limit)
      changes.push(`cut to ${limit} characters`)
    }
  }

  return checkKeyword(key, text, opts) === null ? { value: text, changes } : null
}
