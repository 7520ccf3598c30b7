import type { KeywordType } from './delivery/keywords.js'
import type { SubscribeMessage } from './delivery/message.js'
import { checkSpec } from './delivery/templates.js'

/** One key of a typed template: its keyword type, or for an `enum`/`enum_string` key its allowed values. */
export type KeywordSpec = KeywordType | readonly string[]

/** The keys of a template and what each one takes: `{ character_string1: 'character_string', thing2: 'thing' }`. */
export type TemplateSpec = { readonly [key: string]: KeywordSpec }

/** What `defineTemplate` returns: pass it as a message's `templateId` (or, the older form, `template`). */
export interface TemplateDefinition<S extends TemplateSpec = TemplateSpec> {
  /** the template id (`priTmplId`) */
  readonly id: string
  readonly keys: S
}

type ValueOf<V> = V extends readonly string[] ? V[number] : string | number

/** A keyword value as `data` takes it; an enum key takes only its declared values. */
export type KeywordInput<V extends KeywordSpec> = ValueOf<V> | { value: ValueOf<V> }

/** Exactly the template's keys: a missing or an extra key is a type error. */
export type TemplateData<S extends TemplateSpec> = { -readonly [K in keyof S]: KeywordInput<S[K]> }

/** What a typed message has besides its template: `toUser`, `page`, ... and `data` typed from the definition. */
export interface TypedMessageFields<S extends TemplateSpec> extends Omit<SubscribeMessage, 'templateId' | 'data'> {
  data: TemplateData<S>
}

/** A typed message naming its template in `templateId`: `{ toUser, templateId: shipped, data: { ... } }`. */
export interface TypedIdMessage<S extends TemplateSpec> extends TypedMessageFields<S> {
  /** a `defineTemplate()` value: its id goes out as `template_id`, its keys type `data` */
  templateId: TemplateDefinition<S>
  /** the template is `templateId` */
  template?: never
}

/** A typed message in the older form, the definition as `template`: `{ toUser, template: shipped, data: { ... } }`. */
export interface TemplateFieldMessage<S extends TemplateSpec> extends TypedMessageFields<S> {
  template: TemplateDefinition<S>
  /** the id comes from `template` */
  templateId?: never
}

/**
 * A subscribe message of a typed template: `{ toUser, templateId: shipped, data: { ... } }` (or
 * `template: shipped`, the older form); a wrong, missing or extra data key is a type error.
 */
export type TypedMessage<S extends TemplateSpec> = TypedIdMessage<S> | TemplateFieldMessage<S>

/**
 * A key whose declared type is not its own (`thing2: 'time'`), or an enum list on a key that is not
 * an enum, becomes `never`: WeChat derives a key's type from its name, so the declaration must agree.
 */
type KeyFits<K, V> = V extends readonly string[]
  // (an enum lists at least one value: `[]` throws at run time, so it does not compile either)
  ? (K extends `enum${string}` ? (V extends readonly [] ? never : V) : never)
  : (K extends `${V & string}${number}` ? V : never)

export type CheckedSpec<S extends TemplateSpec> = { [K in keyof S]: KeyFits<K, S[K]> }

/**
 * Declare a template's keys once, and get type-checked messages: pass the value as `templateId`
 * (`{ toUser, templateId: shipped, data }`; `template: shipped` works too) and a wrong, missing or
 * extra data key is a TypeScript error, and an enum key takes only its values.
 * At run time the message is validated against the declared keys too (and against the account's
 * template list when it is known, which wins). `npx fastify-wechat-push templates` writes these
 * declarations for an account.
 * @example
 * const shipped = defineTemplate('TPL_ID', { character_string1: 'character_string', thing2: 'thing', enum_string3: ['快递', '自提'] })
 * await app.wechat.send({ toUser, templateId: shipped, data: { character_string1: 'SO1', thing2: 'Mug', enum_string3: '快递' } })
 * @throws TypeError when a key is not `type + index`, its type is not its name's, or an enum lists no values
 */
export function defineTemplate<const S extends TemplateSpec> (id: string, keys: S & CheckedSpec<S>): TemplateDefinition<S> {
  checkSpec(id, keys)
  const copy = Object.fromEntries(Object.entries(keys).map(([key, spec]) => [key, Array.isArray(spec) ? Object.freeze([...spec]) : spec]))
  return Object.freeze({ id, keys: Object.freeze(copy) as unknown as S })
}

declare module 'fastify' {
  interface FastifyReply {
    /** queue typed subscribe message(s) to go out after this response, if its status is < 400 */
    wechatPush<S extends TemplateSpec> (messages: TypedMessage<S> | readonly TypedMessage<S>[]): this
  }
}
