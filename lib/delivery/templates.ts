import type { PrivateTemplate } from '../api/templates.js'
import type { TemplateKind } from './credits.js'
import { isKeywordKey, keywordType, KEYWORD_TYPES } from './keywords.js'
import type { KeywordType } from './keywords.js'

/** What a template says about one of its keys. */
export interface KeySpec {
  /** from the key's name (`thing1` → thing); undefined for a type this library does not know */
  type: KeywordType | undefined
  /** the allowed values of an enum key (gettemplate `keywordEnumValueList`, or a typed template's list) */
  enumValues?: readonly string[]
}

/** A template reduced to what validation needs: its keys (in layout order) and its kind. */
export interface TemplateShape {
  id: string
  keys: ReadonlyMap<string, KeySpec>
  /** one-time (type 2) or long-term (type 3); unknown for a typed template WeChat has not listed yet */
  kind?: TemplateKind
  /** 'wechat': parsed from gettemplate; 'declared': from a `defineTemplate` spec */
  source: 'wechat' | 'declared'
  /**
   * The account has the template but its content names no key we can read (a gettemplate entry
   * without content): the id is known (no local 40037), its keys are checked by their names.
   */
  keysUnknown?: true
}

/**
 * What validation knows about a template id: its shape, `'unknown'` when the account's template
 * list is known and does not hold it (WeChat would answer 40037), or undefined when nothing is known
 * (no list yet, or WeChat unreachable): then only the key-name rules apply.
 */
export type TemplateLookup = (templateId: string) => TemplateShape | 'unknown' | undefined

/**
 * The template knowledge Delivery uses. `prepare` is called before validating messages: it returns
 * undefined when nothing needs waiting for (the warm path: in-process maps only), else a promise that
 * settles once the list was loaded or refreshed (it never rejects).
 */
export interface TemplateRules {
  lookup: TemplateLookup
  prepare (templateIds: readonly string[]): Promise<void> | undefined
}

const KEY_PATTERN = /\{\{([a-z_]+\d+)\.DATA\}\}/g

/** The keys of a template's `content`, in layout order (`{{thing1.DATA}}` → thing1; WECHAT.md §4.1). */
export function contentKeys (content: string): string[] {
  return [...new Set([...content.matchAll(KEY_PATTERN)].map((m) => m[1] as string))]
}

/** `keywordCode` may or may not carry `.DATA` (WECHAT.md §4.1 UNCERTAIN): both name the same key. */
export function normaliseKeywordCode (code: string): string {
  return code.replace(/\.DATA$/, '')
}

export function kindOfType (type: unknown): TemplateKind | undefined {
  return type === 2 ? 'one-time' : type === 3 ? 'long-term' : undefined
}

/** Parse one gettemplate entry, once, into its key map (types from the key names, enum values). */
export function parseTemplate (template: PrivateTemplate): TemplateShape {
  const enums = new Map<string, readonly string[]>()
  // (an empty list allows nothing: read as no list, the value is checked by its type alone)
  for (const entry of template.keywordEnumValueList ?? []) if (entry.enumValueList.length > 0) enums.set(normaliseKeywordCode(entry.keywordCode), Object.freeze([...entry.enumValueList]))
  const keys = new Map<string, KeySpec>()
  for (const key of contentKeys(template.content)) {
    const values = enums.get(key)
    keys.set(key, values === undefined ? { type: keywordType(key) } : { type: keywordType(key), enumValues: values })
  }
  const shape: TemplateShape = { id: template.priTmplId, keys, source: 'wechat' }
  if (keys.size === 0) shape.keysUnknown = true
  const kind = kindOfType(template.type)
  if (kind !== undefined) shape.kind = kind
  return shape
}

/** A typed template's spec: each key's type, or for an enum key the list of its allowed values. */
export type KeywordSpecValue = KeywordType | readonly string[]

const TYPES: ReadonlySet<string> = new Set(KEYWORD_TYPES)
const declared = new WeakMap<object, TemplateShape>()

/**
 * Check a `defineTemplate` spec: every key is `type + index`, its declared type is the key's own type
 * (WeChat derives the type from the name), and enum keys list their values.
 * @throws TypeError naming the first problem
 */
export function checkSpec (id: unknown, keys: unknown): asserts keys is Record<string, KeywordSpecValue> {
  if (typeof id !== 'string' || id.trim() === '' || /[\s\p{Cc}]/u.test(id)) throw new TypeError('defineTemplate: the template id must be a non-empty string without spaces')
  if (keys === null || typeof keys !== 'object' || Array.isArray(keys)) throw new TypeError(`defineTemplate(${id}): keys must be an object like { thing1: 'thing' }`)
  const entries = Object.entries(keys)
  if (entries.length === 0) throw new TypeError(`defineTemplate(${id}): a template has at least one key`)
  for (const [key, spec] of entries) {
    if (!isKeywordKey(key)) throw new TypeError(`defineTemplate(${id}): ${key} is not a template key (a type and a number, like thing1)`)
    const type = keywordType(key)
    if (Array.isArray(spec)) {
      if (type !== 'enum' && type !== 'enum_string') throw new TypeError(`defineTemplate(${id}): ${key} is not an enum key, so it takes a type name, not a list of values`)
      if (spec.length === 0 || !spec.every((v) => typeof v === 'string' && v !== '')) throw new TypeError(`defineTemplate(${id}): ${key} must list its allowed values as non-empty strings`)
    } else if (typeof spec !== 'string' || !TYPES.has(spec)) {
      throw new TypeError(`defineTemplate(${id}): ${key} must be a keyword type (${KEYWORD_TYPES.join(', ')}) or, for an enum key, its list of values`)
    } else if (type !== undefined && spec !== type) {
      throw new TypeError(`defineTemplate(${id}): ${key} is of type ${type} by its name, not ${spec}`)
    }
  }
}

/** The shape of a typed template (computed once per definition object). */
export function declaredShape (definition: { id: string, keys: Readonly<Record<string, KeywordSpecValue>> }): TemplateShape {
  const known = declared.get(definition)
  if (known !== undefined) return known
  checkSpec(definition.id, definition.keys)
  const keys = new Map<string, KeySpec>()
  for (const [key, spec] of Object.entries(definition.keys)) {
    keys.set(key, Array.isArray(spec) ? { type: keywordType(key), enumValues: Object.freeze([...spec]) } : { type: keywordType(key) })
  }
  const shape: TemplateShape = { id: definition.id, keys, source: 'declared' }
  declared.set(definition, shape)
  return shape
}

/**
 * Whether a value is a typed template (what `defineTemplate()` returns: `{ id: string, keys: object }`).
 * Read by its shape, not by identity, so a definition made by another copy of the package (its CJS
 * and ESM builds) or written by hand counts too; its keys are checked when the message is validated.
 */
export function isTemplateDefinition (value: unknown): value is { id: string, keys: Readonly<Record<string, KeywordSpecValue>> } {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const { id, keys } = value as { id?: unknown, keys?: unknown }
  return typeof id === 'string' && keys !== null && typeof keys === 'object' && !Array.isArray(keys)
}

/**
 * The template id a message names, if any: `templateId` (a string, or a `defineTemplate()` value's
 * id), else a typed message's `template.id`.
 */
export function templateIdOf (message: unknown): string | undefined {
  try {
    if (message === null || typeof message !== 'object') return undefined
    const m = message as { templateId?: unknown, template?: unknown }
    if (typeof m.templateId === 'string') return m.templateId
    if (isTemplateDefinition(m.templateId)) return m.templateId.id
    return isTemplateDefinition(m.template) ? m.template.id : undefined
  } catch {
    // (a getter or Proxy trap that throws: prepareMessage refuses the message with a coded error)
    return undefined
  }
}

/** The distinct template ids of a batch. */
export function templateIdsOf (messages: readonly unknown[]): string[] {
  const ids = new Set<string>()
  for (const message of messages) {
    const id = templateIdOf(message)
    if (id !== undefined) ids.add(id)
  }
  return [...ids]
}
