// Value rules for each subscribe-message keyword type (WECHAT.md §3). WeChat answers 47003 for a value
// that breaks them, and since a one-time subscription is not consumed by a rejected send, catching the
// mistake before the call gives the caller a precise field-level error instead of a round trip.
//
// Where WECHAT.md is vague these rules pick the reading that flags obvious programming mistakes (wrong
// field, raw Date string, letters in a number) but accepts anything a real template plausibly takes; the
// simulator uses the same rules, so being needlessly strict would make it reject what WeChat accepts.

export type KeywordType =
  | 'thing' | 'number' | 'letter' | 'symbol' | 'character_string' | 'time' | 'date' | 'amount'
  | 'phone_number' | 'car_number' | 'name' | 'phrase' | 'short_thing' | 'enum' | 'enum_string'

export interface KeywordCheckOptions {
  /** The template's allowed values for an enum key (gettemplate `keywordEnumValueList`, WECHAT.md §4.1). */
  enumValues?: readonly string[]
}

/**
 * Maximum length in Unicode code points (WECHAT.md §3: "one Chinese character counts as 1"). `name` is
 * the limit for a name without Chinese characters; see NAME_HAN_MAX_LENGTH.
 */
export const KEYWORD_LIMITS = Object.freeze({
  thing: 20,
  number: 32,
  letter: 32,
  symbol: 5,
  character_string: 32,
  phone_number: 17,
  car_number: 8,
  name: 20,
  phrase: 5,
  // Undocumented type; ≤5 is what one third-party test suite observed (WECHAT.md §3, UNCERTAIN). It is
  // what 'truncate' cuts to and what the simulator enforces; strict validation only refuses past
  // SHORT_THING_LOOSE_MAX (§3: "validate loosely and let 47003 decide").
  short_thing: 5
} as const)

/**
 * The most strict validation lets through for `short_thing`: a short thing is surely not longer than a
 * `thing` (20). Between 6 and 20 characters WeChat decides (47003 if it keeps to the observed 5).
 */
export const SHORT_THING_LOOSE_MAX = 20

/** §3: "mixed Chinese+letters counts as Chinese (≤10)". */
export const NAME_HAN_MAX_LENGTH = 10
/** §3 amount: "one currency symbol + up to 10 digits"; decimals are not counted. */
export const AMOUNT_MAX_INTEGER_DIGITS = 10

/** [rule suffix, message without the key]; the caller prefixes both with the type and key. */
export type RuleFailure = readonly [rule: string, message: string]
type Checker = (value: string, opts: KeywordCheckOptions) => RuleFailure | null

export const HAN = /\p{Script=Han}/u
// Line and paragraph separators break a line just like \n, which bizsend's symbol rule forbids.
const CONTROL = /[\p{Cc}\u2028\u2029]/u
const DIGIT = /^[0-9]$/
const LETTER_OR_NUMBER = /[\p{L}\p{N}]/u

/** Code points (a lone surrogate counts as one, as with `[...value]`), counted without an array. */
export function codePointLength (value: string): number {
  let length = value.length
  for (let i = 0; i < value.length - 1; i++) {
    const unit = value.charCodeAt(i)
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const next = value.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) { length--; i++ }
    }
  }
  return length
}

function describeChar (ch: string): string {
  return CONTROL.test(ch)
    ? `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`
    : JSON.stringify(ch)
}

function maxLength (value: string, max: number, qualifier = ''): RuleFailure | null {
  // A string has at least as many UTF-16 units as code points: short ones need no counting.
  if (value.length <= max) return null
  const length = codePointLength(value)
  return length > max ? ['maxLength', `must be at most ${max} characters${qualifier} (got ${length})`] : null
}

/**
 * `whole` matches exactly the strings whose every code point is `allowed`: one regex test answers
 * the common case, and the per-character walk only runs to name the first character refused.
 */
function charset (value: string, whole: RegExp, allowed: (ch: string) => boolean, what: string): RuleFailure | null {
  if (whole.test(value)) return null
  for (const ch of value) {
    if (!allowed(ch)) return ['charset', `may only contain ${what} (found ${describeChar(ch)})`]
  }
  return null
}

const NUMBER = /^\d+(?:\.\d+)?$/
const ASCII_LETTER = /^[A-Za-z]$/
// §3 amount: at most one currency symbol (any \p{Sc}: ¥ ￥ $ € £ …), digits, optional decimals, optional
// trailing 元. A plain number is also accepted, as WeChat does in practice.
const AMOUNT = /^\p{Sc}?(\d+)(?:\.\d+)?元?$/u
// §3 car_number: the province prefix and a suffix such as 挂/学/警 are Chinese, the rest letters/digits.
const CAR_NUMBER = /^\p{Script=Han}?[A-Za-z0-9]+\p{Script=Han}?$/u
const PHRASE_CHAR = /^\p{Script=Han}$/u

// Per-character predicates of the charset rules, and for each the pattern of a whole string of such characters.
const isAsciiLetter = (ch: string): boolean => ASCII_LETTER.test(ch)
const ALL_ASCII_LETTERS = /^[A-Za-z]*$/
const isSymbol = (ch: string): boolean => !LETTER_OR_NUMBER.test(ch)
const ALL_SYMBOLS = /^[^\p{L}\p{N}]*$/u
const isCharacterStringChar = (ch: string): boolean => !HAN.test(ch) && !CONTROL.test(ch)
const ALL_CHARACTER_STRING = /^[^\p{Script=Han}\p{Cc}\u2028\u2029]*$/u
const isPhoneChar = (ch: string): boolean => DIGIT.test(ch) || !(LETTER_OR_NUMBER.test(ch) || CONTROL.test(ch))
const ALL_PHONE = /^(?:[0-9]|[^\p{L}\p{N}\p{Cc}\u2028\u2029])*$/u
const isNameChar = (ch: string): boolean => !/\p{N}/u.test(ch) && !CONTROL.test(ch)
const ALL_NAME = /^[^\p{N}\p{Cc}\u2028\u2029]*$/u
const isPhraseChar = (ch: string): boolean => PHRASE_CHAR.test(ch)
const ALL_PHRASE = /^\p{Script=Han}*$/u

// A date at the start of a time/date point: 2019年10月1日 or 2019-10-01 (also / and .; the separator must
// repeat). The lookaheads only allow the spaces before it when a time follows, so a trailing space fails
// like any other stray character.
const DATE_PREFIX = /^(?:(\d{4})年(\d{1,2})月(\d{1,2})日(?: *(?=\d)|$)|(\d{4})([-/.])(\d{1,2})\5(\d{1,2})(?: +(?=\d)|$))/
// Seconds are UNCERTAIN (§3 notes: one report of `11:50:00` rejected); accept them and let 47003 decide.
const TIME = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

function badDate (year: number, month: number, day: number): string | null {
  if (month < 1 || month > 12) return `has an invalid month (${month})`
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0
  const days = month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]
  return day < 1 || day > days ? `has an invalid day (${day} in month ${month} of ${year})` : null
}

function badTime (hour: number, minute: number, second: number): string | null {
  if (hour > 23) return `has an invalid hour (${hour}); use the 24-hour clock 0-23`
  if (minute > 59) return `has an invalid minute (${minute})`
  return second > 59 ? `has an invalid second (${second})` : null
}

const POINT_FORMAT = {
  time: 'must be a 24-hour time such as 15:01, optionally after a date (2019年10月1日 15:01 or 2019-10-01 15:01); ' +
    'a range joins two of these with ~',
  date: 'must be a date such as 2019年10月1日 or 2019-10-01, optionally followed by a 24-hour time; ' +
    'a range joins two of these with ~'
}

// One side of a time/date value. §3: a `time` needs the clock part and may carry a date; a `date` needs
// the date and may carry a clock time.
const FORMAT_FAILURE: Readonly<Record<'time' | 'date', RuleFailure>> = {
  time: ['format', POINT_FORMAT.time],
  date: ['format', POINT_FORMAT.date]
}

function checkPoint (point: string, kind: 'time' | 'date'): RuleFailure | null {
  const format = FORMAT_FAILURE[kind]
  const d = DATE_PREFIX.exec(point)
  if (d === null && kind === 'date') return format
  if (d !== null) {
    const bad = d[1] !== undefined
      ? badDate(Number(d[1]), Number(d[2]), Number(d[3]))
      : badDate(Number(d[4]), Number(d[6]), Number(d[7]))
    if (bad !== null) return ['invalid', bad]
  }
  const rest = d === null ? point : point.slice(d[0].length)
  if (rest === '') return kind === 'date' ? null : format
  const t = TIME.exec(rest)
  if (t === null) return format
  const bad = badTime(Number(t[1]), Number(t[2]), Number(t[3] ?? 0))
  return bad === null ? null : ['invalid', bad]
}

// §3 (newer copies of the table): a range is two points joined by `~`; spaces around it are common in
// the official examples' style, so they are accepted.
function timeOrDate (kind: 'time' | 'date'): Checker {
  return (value) => {
    const tilde = value.indexOf('~')
    if (tilde === -1) return checkPoint(value, kind)
    if (value.includes('~', tilde + 1)) return FORMAT_FAILURE[kind]
    return checkPoint(value.slice(0, tilde).replace(/ +$/, ''), kind) ?? checkPoint(value.slice(tilde + 1).replace(/^ +/, ''), kind)
  }
}

function enumChecker (value: string, opts: KeywordCheckOptions): RuleFailure | null {
  const allowed = opts.enumValues
  if (allowed === undefined || allowed.includes(value)) return null
  const shown = allowed.slice(0, 10).map((v) => JSON.stringify(v)).join(', ')
  const more = allowed.length > 10 ? `, … (${allowed.length} values)` : ''
  return ['notAllowed', `must be one of the template's values: ${shown}${more} (got ${JSON.stringify(value)})`]
}

export const RULES: Readonly<Record<KeywordType, Checker>> = {
  thing: (v) => maxLength(v, KEYWORD_LIMITS.thing),
  short_thing: (v) => maxLength(v, SHORT_THING_LOOSE_MAX),
  // §3: "≤ 32 digits; digits only, decimal point allowed"; no sign. The limit counts digits, as §3 says:
  // whether WeChat counts the point too is unknown, and refusing what WeChat may accept is the worse error.
  number: (v) => {
    if (!NUMBER.test(v)) return ['format', 'must be digits with at most one decimal point, e.g. 42 or 3.14']
    const digits = v.length - (v.includes('.') ? 1 : 0)
    return digits > KEYWORD_LIMITS.number ? ['maxLength', `must have at most ${KEYWORD_LIMITS.number} digits (got ${digits})`] : null
  },
  letter: (v) => charset(v, ALL_ASCII_LETTERS, isAsciiLetter, 'ASCII letters') ?? maxLength(v, KEYWORD_LIMITS.letter),
  symbol: (v) => {
    const control = [...v].find((ch) => CONTROL.test(ch))
    if (control !== undefined) {
      return ['controlChar', `must not contain line breaks or other control characters (found ${describeChar(control)})`]
    }
    return charset(v, ALL_SYMBOLS, isSymbol, 'symbols, not letters, digits or Chinese characters') ??
      maxLength(v, KEYWORD_LIMITS.symbol)
  },
  // §3 forbids only Chinese; any other letter, digit, symbol or space is taken.
  character_string: (v) => charset(v, ALL_CHARACTER_STRING, isCharacterStringChar,
    'digits, letters and symbols, no Chinese characters') ?? maxLength(v, KEYWORD_LIMITS.character_string),
  time: timeOrDate('time'),
  date: timeOrDate('date'),
  amount: (v) => {
    const m = AMOUNT.exec(v)
    if (m === null) {
      return ['format', 'must be an amount: an optional currency symbol, digits with optional decimals and an ' +
        'optional trailing 元, e.g. ¥58.00, 58.00元 or 58']
    }
    return m[1].length > AMOUNT_MAX_INTEGER_DIGITS
      ? ['maxDigits', `must have at most ${AMOUNT_MAX_INTEGER_DIGITS} digits before the decimal point (got ${m[1].length})`]
      : null
  },
  // §3 phone_number: "digits and symbols" (+86-0766-66888866): any non-letter, non-control character.
  // Requiring one digit catches a value that is only punctuation.
  phone_number: (v) =>
    charset(v, ALL_PHONE, isPhoneChar, 'digits and symbols') ??
    (/\d/.test(v) ? null : ['format', 'must contain at least one digit']) ??
    maxLength(v, KEYWORD_LIMITS.phone_number),
  car_number: (v) => CAR_NUMBER.test(v)
    ? maxLength(v, KEYWORD_LIMITS.car_number)
    : ['format', 'must be a licence plate of letters and digits, optionally with a Chinese character first and ' +
        'last, e.g. 京A12345 or 粤A8Z888挂'],
  // §3 name: "≤10 Chinese characters, or ≤20 letters/symbols; mixed counts as Chinese". Digits are not
  // letters or symbols, so they are rejected; spaces and name punctuation (. · - ') are symbols.
  name: (v) => charset(v, ALL_NAME, isNameChar, 'letters and symbols, no digits') ??
    (HAN.test(v)
      ? maxLength(v, NAME_HAN_MAX_LENGTH, ' when it contains Chinese characters')
      : maxLength(v, KEYWORD_LIMITS.name)),
  phrase: (v) => charset(v, ALL_PHRASE, isPhraseChar, 'Chinese characters') ?? maxLength(v, KEYWORD_LIMITS.phrase),
  enum: enumChecker,
  enum_string: enumChecker
}

export const KEYWORD_TYPES: readonly KeywordType[] = Object.freeze(Object.keys(RULES) as KeywordType[])
