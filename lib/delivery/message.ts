import { invalid } from '../errors.js'
import type { WireMessage } from '../api/subscribe.js'
import type { ResolvedOptions } from '../options.js'
import { checkKeyword, fixKeyword, isKeywordKey } from './keywords.js'
import type { KeywordCheckOptions } from './keywords.js'
import { declaredShape, isTemplateDefinition } from './templates.js'
import type { KeywordSpecValue, TemplateLookup, TemplateShape } from './templates.js'

/** What callers pass (DESIGN.md "Types"). */
export interface SubscribeMessage {
  toUser: string
  templateId: string
  data: Record<string, string | number | { value: string | number }>
  page?: string
  miniprogramState?: 'developer' | 'trial' | 'formal'
  lang?: 'zh_CN' | 'en_US' | 'zh_HK' | 'zh_TW'
}

/** A value `'truncate'` mode changed, reported back in the result. */
export interface ValueChange { key: string, from: string, to: string, changes: string[] }

export interface PreparedMessage {
  wire: WireMessage
  changes: ValueChange[]
}

export interface Violation { key: string, rule: string, message: string, index?: number }

const MESSAGE_FIELDS = new Set(['toUser', 'templateId', 'template', 'data', 'page', 'miniprogramState', 'lang'])
const STATES = new Set(['developer', 'trial', 'formal'])
const LANGS = new Set(['zh_CN', 'en_US', 'zh_HK', 'zh_TW'])
const MAX_KEYS = 50
const CONTROL = /\p{Cc}/u
const BLANK_OR_CONTROL = /[\s\p{Cc}]/u
/** check options of a key without an enum list, shared rather than allocated per key */
const NO_ENUM: KeywordCheckOptions = Object.freeze({})

/**
 * Turn a caller's message into WeChat's wire form, or throw FST_WECHAT_INVALID_MESSAGE naming every
 * problem at once. Runs before any network call: a message WeChat would refuse never costs a call.
 * `templates` says what is known of the message's template (the account's list, lib/delivery/
 * templates-catalog.ts): with a shape, the data must hold exactly its keys; without one, the key names
 * decide the rules (and a typed message's declared keys, when it has them).
 */
export function prepareMessage (input: unknown, options: Pick<ResolvedOptions, 'defaults' | 'validation'>, templates?: TemplateLookup): PreparedMessage {
  try {
    return readMessage(input, options, templates)
  } catch (err) {
    if ((err as { code?: unknown } | null)?.code === 'FST_WECHAT_INVALID_MESSAGE') throw err
    // The caller's object could not be read: a getter or Proxy trap threw, or a revoked Proxy.
    throw invalid([{ key: 'message', rule: 'type', message: `the message could not be read (${describeThrown(err)})` }])
  }
}

/**
 * A copy of a message as the caller handed it over, for a message read later (a handler push, read
 * when its batch is flushed; a send or enqueue waiting for the template list): it goes out as it was
 * then, not as the caller's object is when it is read (a loop that reused one object for three users
 * sent its last state three times). The top-level fields, `data` and its `{ value }` objects are
 * copied; what is not a plain object, or cannot be read, is returned as it is, for validation to
 * refuse with its coded error.
 */
export function snapshotMessage (input: unknown): unknown {
  if (input === null || typeof input !== 'object') return input
  try {
    if (Array.isArray(input)) return input
    const copy: Record<string, unknown> = { ...input }
    const data = copy.data
    if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
      // (fromEntries: a key '__proto__' stays an own key, for validation to refuse)
      copy.data = Object.fromEntries(Object.keys(data).map((key) => {
        const value = (data as Record<string, unknown>)[key]
        return [key, value !== null && typeof value === 'object' && !Array.isArray(value) ? { ...value } : value]
      }))
    }
    return copy
  } catch {
    return input
  }
}

function describeThrown (err: unknown): string {
  try {
    return err instanceof Error ? err.message : String(err)
  } catch {
    return 'an error that cannot be shown'
  }
}

function readMessage (input: unknown, options: Pick<ResolvedOptions, 'defaults' | 'validation'>, templates?: TemplateLookup): PreparedMessage {
  const violations: Violation[] = []
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw invalid([{ key: 'message', rule: 'type', message: 'the message must be an object' }])
  const message = input as Record<string, unknown>

  for (const field of Object.keys(message)) {
    if (!MESSAGE_FIELDS.has(field)) bad(violations, field, 'unknown', `${field} is not a message field (expected toUser, templateId or template, data, page, miniprogramState, lang)`)
  }
  const toUser = message.toUser
  if (typeof toUser !== 'string' || toUser.trim() === '') bad(violations, 'toUser', 'required', 'toUser must be the recipient\'s openid (a non-empty string)')
  else if (toUser.length > 128 || BLANK_OR_CONTROL.test(toUser)) bad(violations, 'toUser', 'format', 'toUser must be an openid: no spaces or control characters, at most 128 characters')
  const typed = readTemplate(message, violations)
  // templateId is the id, or a defineTemplate() value (as `template` is): then the id is its id
  const rawId = message.templateId
  const templateId = rawId === undefined || rawId === null || isTemplateDefinition(rawId) ? typed?.definition.id : rawId
  if (typeof templateId !== 'string' || templateId.trim() === '') {
    const hint = rawId !== null && typeof rawId === 'object'
      ? ': this object is not one (a defineTemplate() value has a string id and its keys, { id, keys })'
      : ' (or template: a defineTemplate() value)'
    bad(violations, 'templateId', 'required', `templateId must be a non-empty string or a defineTemplate() value${hint}`)
  } else if (templateId.length > 128 || BLANK_OR_CONTROL.test(templateId)) {
    bad(violations, 'templateId', 'format', 'templateId must be a template id: no spaces or control characters, at most 128 characters')
  }

  const page = message.page ?? options.defaults.page
  if (page !== undefined && (typeof page !== 'string' || page.length > 1024)) bad(violations, 'page', 'type', 'page must be a string of at most 1024 characters')
  // (a path with its query, as app.json names pages: a line break or NUL in it is a bug upstream, which WeChat answers 41030 at best)
  else if (typeof page === 'string' && CONTROL.test(page)) bad(violations, 'page', 'format', 'page must be a mini program path (with its query): no control characters')
  const state = message.miniprogramState ?? options.defaults.miniprogramState
  if (state !== undefined && !STATES.has(state as string)) bad(violations, 'miniprogramState', 'enum', 'miniprogramState must be developer, trial or formal')
  const lang = message.lang ?? options.defaults.lang
  if (lang !== undefined && !LANGS.has(lang as string)) bad(violations, 'lang', 'enum', 'lang must be zh_CN, en_US, zh_HK or zh_TW')

  const data: Record<string, { value: string }> = {}
  const changes: ValueChange[] = []
  const rawData = message.data
  if (rawData === null || typeof rawData !== 'object' || Array.isArray(rawData)) {
    bad(violations, 'data', 'required', 'data must be an object of template keywords, e.g. { thing1: \'Parcel shipped\' }')
  } else {
    const shape = options.validation === 'off' || typeof templateId !== 'string' ? undefined : templateShape(templateId, typed, templates, violations)
    const keys = Object.keys(rawData)
    if (keys.length === 0) bad(violations, 'data', 'required', 'data must hold at least one keyword')
    if (keys.length > MAX_KEYS) bad(violations, 'data', 'size', `data holds ${keys.length} keywords; a template has far fewer`)
    const count = Math.min(keys.length, MAX_KEYS)
    for (let i = 0; i < count; i++) {
      const key = keys[i] as string
      const raw = (rawData as Record<string, unknown>)[key]
      if (isUnsafeInteger(raw)) {
        // 12345678901234567890 arrives already rounded (…67000): sending it would show the wrong number
        bad(violations, `data.${key}`, 'type', `data.${key} is an integer beyond 2^53, already rounded by JavaScript: pass it as a string`)
        continue
      }
      let value = normaliseValue(raw)
      if (value === undefined) {
        bad(violations, `data.${key}`, 'type', `data.${key} must be a string, a finite number or { value: string | number }`)
        continue
      }
      if (options.validation === 'off') { data[key] = { value }; continue }
      const given = value
      let repaired: string | undefined
      if (!(value as string & WellFormedString).isWellFormed()) {
        // Half of a surrogate pair (a string cut inside an emoji) is no character: WeChat cannot show it.
        if (options.validation === 'strict') {
          bad(violations, `data.${key}`, 'encoding', `data.${key} holds a lone surrogate (half of an emoji or other character cut in two), which is not text WeChat can show`)
          continue
        }
        value = repaired = (value as string & WellFormedString).toWellFormed()
      }
      const spec = shape?.keys.get(key)
      if (shape !== undefined && spec === undefined) {
        // WeChat ignores a key its template lacks, so the value would silently never show: a typo.
        if (options.validation === 'truncate') changes.push({ key, from: value, to: '', changes: [`removed: not a key of template ${shape.id}`] })
        else bad(violations, `data.${key}`, 'unknown_key', `data.${key} is not a key of template ${shape.id} (its keys: ${[...shape.keys.keys()].join(', ')})`)
        continue
      }
      if (shape === undefined && !isKeywordKey(key)) {
        bad(violations, `data.${key}`, 'key', `data.${key} is not a template keyword (keywords are a type and a number, like thing1 or time2)`)
        continue
      }
      const opts = spec?.enumValues === undefined ? NO_ENUM : { enumValues: spec.enumValues }
      const violation = checkKeyword(key, value, opts)
      if (!violation) {
        data[key] = { value }
        if (repaired !== undefined) changes.push({ key, from: given, to: value, changes: [SURROGATES_REPLACED] })
        continue
      }
      const fixed = options.validation === 'truncate' ? fixKeyword(key, value, opts) : null
      if (fixed) {
        data[key] = { value: fixed.value }
        changes.push({ key, from: given, to: fixed.value, changes: repaired === undefined ? fixed.changes : [SURROGATES_REPLACED, ...fixed.changes] })
      } else {
        bad(violations, `data.${key}`, violation.rule, `data.${violation.message}`)
      }
    }
    // When every key was one of the template's and there are as many, none can be missing.
    if (shape !== undefined && (keys.length !== shape.keys.size || violations.length > 0 || changes.length > 0)) {
      const needed = [...shape.keys.keys()]
      for (const key of needed) {
        if (!Object.hasOwn(rawData, key)) bad(violations, `data.${key}`, 'missing', `data.${key} is missing: template ${shape.id} needs ${needed.join(', ')}`)
      }
    }
  }
  if (violations.length > 0) throw invalid(violations)

  const wire: WireMessage = { touser: toUser as string, template_id: templateId as string, data }
  // an empty page is no page (WeChat then opens nothing), not a path WeChat would check against app.json
  if (page !== undefined && page !== '') wire.page = page as string
  // Always sent, WeChat's documented defaults when unset: the OpenApiDoc table marks both fields
  // required while the other pages say optional (WECHAT.md §2.1, UNCERTAIN): either way this is read.
  wire.miniprogram_state = (state ?? 'formal') as WireMessage['miniprogram_state']
  wire.lang = (lang ?? 'zh_CN') as WireMessage['lang']
  return { wire, changes }
}

const SURROGATES_REPLACED = 'replaced lone surrogates (halves of a character cut in two) with U+FFFD'

/** ES2024 string methods Node 20 has and this project's `lib` (ES2023) does not declare. */
interface WellFormedString { isWellFormed (): boolean, toWellFormed (): string }

function bad (violations: Violation[], key: string, rule: string, message: string): void {
  violations.push({ key, rule, message })
}

interface TypedTemplate { id: string, keys: Readonly<Record<string, KeywordSpecValue>> }

/** A typed message's definition, and the field that carried it (for the violations' keys). */
interface TypedRef { definition: TypedTemplate, field: 'templateId' | 'template' }

/**
 * A typed message's template: a defineTemplate() value given as `templateId` or as `template` (the
 * older form, kept as an alias), checked; undefined when there is none. Both given must name one
 * template; then `template`'s declaration is the one used.
 */
function readTemplate (message: Record<string, unknown>, violations: Violation[]): TypedRef | undefined {
  const rawId = message.templateId
  const byId = isTemplateDefinition(rawId) ? rawId : undefined
  const template = message.template
  if (template === undefined) return byId === undefined ? undefined : { definition: byId, field: 'templateId' }
  if (!isTemplateDefinition(template)) {
    bad(violations, 'template', 'type', 'template must be a defineTemplate() value ({ id, keys })')
    return byId === undefined ? undefined : { definition: byId, field: 'templateId' }
  }
  // (an id that is neither a string nor a definition is refused as such, not as a second template)
  const other = byId !== undefined ? byId.id : typeof rawId === 'string' ? rawId : undefined
  if (other !== undefined && other !== template.id) bad(violations, 'templateId', 'conflict', `templateId and template.id name different templates (${String(other)}, ${template.id})`)
  return { definition: template, field: 'template' }
}

/**
 * The shape to validate against: the account's template when the list holds it (WeChat's word wins
 * over a declaration), else a typed message's declared keys. A template id the known list lacks is
 * refused like WeChat's 40037.
 */
function templateShape (templateId: string, typed: TypedRef | undefined, templates: TemplateLookup | undefined, violations: Violation[]): TemplateShape | undefined {
  const known = templates?.(templateId)
  if (known === 'unknown') {
    bad(violations, 'templateId', 'unknown_template', `templateId ${templateId} is not a template of this mini program (WeChat would answer 40037); add it in the MP console or with wechat.templates.add()`)
  } else if (known !== undefined && known.keysUnknown !== true) {
    return known
  }
  if (typed === undefined) return undefined
  try {
    return declaredShape(typed.definition)
  } catch (err) {
    bad(violations, typed.field, 'spec', (err as Error).message)
    return undefined
  }
}

/** `'x'`, `1` and `{ value }` are all accepted and sent as strings (WECHAT.md §2.1). */
function isUnsafeInteger (raw: unknown): boolean {
  const value = raw !== null && typeof raw === 'object' && 'value' in raw ? (raw as { value: unknown }).value : raw
  return typeof value === 'number' && Number.isInteger(value) && !Number.isSafeInteger(value)
}

function normaliseValue (raw: unknown): string | undefined {
  const value = raw !== null && typeof raw === 'object' && !Array.isArray(raw) && Object.keys(raw).length === 1 && 'value' in raw
    ? (raw as { value: unknown }).value
    : raw
  if (typeof value === 'string') return value
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  return undefined
}
