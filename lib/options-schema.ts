import { Type } from '@sinclair/typebox'
import type { Static } from '@sinclair/typebox'
import type { onRequestHookHandler, preHandlerHookHandler } from 'fastify'

/**
 * The option shapes of DESIGN.md "Public contract", as TypeBox schemas so one definition gives both
 * the runtime check and the error path (`retry.attempts: Expected integer`). Values a schema cannot
 * say (functions, cross-field rules) are checked by hand in options.ts.
 */
const NonEmpty = Type.String({ minLength: 1 })

/** A hook as Fastify's route options take it: `(request, reply, done)` or `async (request, reply)`. */
type RouteHook<T extends (this: any, ...args: any) => any> = (this: ThisParameterType<T>, ...args: Parameters<T>) => void | Promise<unknown>
/** `routes.onRequest`: one hook or several, run first on every route of the plugin */
export type OnRequestHook = RouteHook<onRequestHookHandler>
/** `routes.preHandler`: one hook or several, run after validation on every route of the plugin */
export type PreHandlerHook = RouteHook<preHandlerHookHandler>
const OnRequestHookOption = Type.Unsafe<OnRequestHook | OnRequestHook[]>(Type.Any({ description: 'a Fastify onRequest hook or an array of them' }))
const PreHandlerHookOption = Type.Unsafe<PreHandlerHook | PreHandlerHook[]>(Type.Any({ description: 'a Fastify preHandler hook or an array of them' }))

export const RetrySchema = Type.Object({
  attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 20 })),
  minDelay: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
  maxDelay: Type.Optional(Type.Integer({ minimum: 0, maximum: 3_600_000 }))
}, { additionalProperties: false })

export const MiniprogramStateSchema = Type.Union([Type.Literal('developer'), Type.Literal('trial'), Type.Literal('formal')])
export const LangSchema = Type.Union([Type.Literal('zh_CN'), Type.Literal('en_US'), Type.Literal('zh_HK'), Type.Literal('zh_TW')])

export const DefaultsSchema = Type.Object({
  miniprogramState: Type.Optional(MiniprogramStateSchema),
  lang: Type.Optional(LangSchema),
  page: Type.Optional(Type.String({ maxLength: 1024 }))
}, { additionalProperties: false })

/** A route path option: starts with '/', no '*', ':', '?', '#', '%' or whitespace. */
// (no '.' or '..' segment and no '%': a client normalises or decodes those, and never reaches the route)
export const PLAIN_PATH = '^(?!.*/\\.\\.?(?:/|$))/[^*:?#%\\s]*$'

export const QueueObject = Type.Object({
  concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  limiter: Type.Optional(Type.Object({
    max: Type.Integer({ minimum: 1 }),
    // ms; at most what a timer can wait (2^31 - 1, about 24.8 days)
    duration: Type.Integer({ minimum: 1, maximum: 2 ** 31 - 1 })
  }, { additionalProperties: false })),
  attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  durable: Type.Optional(Type.Boolean()),
  replicas: Type.Optional(Type.Integer({ minimum: 1, maximum: 16, description: 'an enqueue resolves once this many replicas have its jobs (Redis WAIT)' })),
  replicaTimeout: Type.Optional(Type.Integer({ minimum: 10, maximum: 60_000, description: 'ms to wait for them' }))
}, { additionalProperties: false })

export const RoutesObject = Type.Object({
  // a plain path: no wildcard, parameter, query or fragment (Fastify would refuse some at boot, uncoded)
  prefix: Type.Optional(Type.String({ pattern: PLAIN_PATH })),
  onRequest: Type.Optional(OnRequestHookOption),
  preHandler: Type.Optional(PreHandlerHookOption),
  dashboard: Type.Optional(Type.Boolean()),
  unprotected: Type.Optional(Type.Boolean())
}, { additionalProperties: false })

export const PushObject = Type.Object({
  path: Type.Optional(Type.String({ pattern: PLAIN_PATH })),
  // The console takes 3 to 32 letters and digits; WECHAT.md §6.1 only says the developer chooses it, so
  // any printable token without spaces is taken (tests and other consoles use 'test-token' and the like)
  token: Type.String({ minLength: 1, maxLength: 128, pattern: '^[\\x21-\\x7e]+$' }),
  encodingAESKey: Type.Optional(Type.String()),
  previousEncodingAESKey: Type.Optional(Type.String()),
  mode: Type.Optional(Type.Union([Type.Literal('plaintext'), Type.Literal('compatible'), Type.Literal('safe')])),
  bodyLimit: Type.Optional(Type.Integer({ minimum: 1024, maximum: 10 * 1024 * 1024 })),
  replayWindow: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400, description: 'seconds; 0 turns the POST timestamp check off' }))
}, { additionalProperties: false })

export const TemplatesObject = Type.Object({
  ttl: Type.Optional(Type.Integer({ minimum: 60, maximum: 7 * 86_400 })),
  validate: Type.Optional(Type.Boolean())
}, { additionalProperties: false })

export const OptionsSchema = Type.Object({
  appId: NonEmpty,
  // (a mini program's AppSecret is 32 hex digits: spaces, line breaks or a megabyte are a mistake)
  appSecret: Type.String({ minLength: 1, maxLength: 256, pattern: '^[\\x21-\\x7e]+$' }),
  baseUrl: Type.Optional(Type.Union([NonEmpty, Type.Array(NonEmpty, { minItems: 1, maxItems: 10 })])),
  tokenEndpoint: Type.Optional(Type.Union([Type.Literal('stable'), Type.Literal('classic')])),
  refreshAhead: Type.Optional(Type.Number({ minimum: 0, maximum: 7000 })),
  refreshInterval: Type.Optional(Type.Number({ minimum: 1, maximum: 3600 })),
  store: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('redis'), Type.Literal('memory')])),
  redisNamespace: Type.Optional(NonEmpty),
  keyPrefix: Type.Optional(Type.String({ maxLength: 100, pattern: '^[^{}\\s\\x00-\\x1f\\x7f]*$' })),
  timeout: Type.Optional(Type.Integer({ minimum: 1, maximum: 120_000 })),
  retry: Type.Optional(RetrySchema),
  defaults: Type.Optional(DefaultsSchema),
  validation: Type.Optional(Type.Union([Type.Literal('strict'), Type.Literal('truncate'), Type.Literal('off')])),
  queue: Type.Optional(Type.Union([Type.Literal(false), QueueObject])),
  routes: Type.Optional(Type.Union([Type.Literal(false), RoutesObject])),
  push: Type.Optional(Type.Union([Type.Literal(false), PushObject])),
  credits: Type.Optional(Type.Union([Type.Literal('off'), Type.Literal('track'), Type.Literal('enforce')])),
  templates: Type.Optional(Type.Union([Type.Literal(false), TemplatesObject])),
  namespace: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_$][A-Za-z0-9_$.-]*$' })),
  retention: Type.Optional(Type.Integer({ minimum: 1, maximum: 366 * 86_400 })),
  clock: Type.Optional(Type.Unsafe<{ now(): number }>(Type.Any({ description: 'an object with now(): number' })))
}, { additionalProperties: false })

/** Sub-objects checked on their own first, so an error names `push.token`, not just `push`. */
export const NESTED_SCHEMAS = { retry: RetrySchema, defaults: DefaultsSchema, queue: QueueObject, routes: RoutesObject, push: PushObject, templates: TemplatesObject } as const

/**
 * The options as a user writes them: the schema's type, except that `queue.replicaTimeout` is only
 * accepted beside `queue.replicas` (registration refuses it alone; the type says so first).
 */
export type OptionsInput = Omit<Static<typeof OptionsSchema>, 'queue'> & { queue?: false | QueueOptionsInput }

type QueueObjectInput = Static<typeof QueueObject>
export type QueueOptionsInput = Omit<QueueObjectInput, 'replicas' | 'replicaTimeout'> & (
  | { replicas?: undefined, replicaTimeout?: undefined }
  | { replicas: number, replicaTimeout?: number }
)
