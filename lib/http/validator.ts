import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler, ValueErrorType } from '@sinclair/typebox/compiler'
import type { ValueError } from '@sinclair/typebox/compiler'
import { Value } from '@sinclair/typebox/value'
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify'

const MAX_REPORTED = 5

/**
 * The validator of our routes, checking with TypeBox's own compiler instead of the app's AJV.
 * Fastify's default AJV options (`removeAdditional: true`, `coerceTypes: 'array'`) would quietly
 * strip an unknown field and turn `toUser: 123` into `"123"`; the user may also have configured
 * AJV differently. Ours is strict whatever the app does: the body is never changed, only the
 * querystring and params (always strings on the wire) are converted ('true' → true, '5' → 5).
 */
export const typeboxValidator: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = TypeCompiler.Compile(schema)
  const convert = httpPart === 'querystring' || httpPart === 'params'
  const integers = convert ? integerFields(schema) : []
  return (input: unknown) => {
    if (integers.length > 0) {
      const notInteger = integers.find((field) => !isIntegerText((input as Record<string, unknown> | null)?.[field]))
      if (notInteger !== undefined) return { error: [{ keyword: 'Integer', instancePath: `/${notInteger}`, schemaPath: '#', params: {}, message: 'must be an integer' }] }
    }
    const value = convert ? Value.Convert(schema, input) : input
    if (check.Check(value)) return { value }
    return { error: describe(check.Errors(value)) }
  }
}

/**
 * TypeBox converts an integer field's text by its leading digits: '1e309', '1.5' and '1e3' all
 * became 1, a request meaning something else answered as if it were valid. Such text is refused.
 */
function integerFields (schema: TSchema): string[] {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {}
  return Object.keys(properties).filter((key) => properties[key]?.type === 'integer')
}

function isIntegerText (value: unknown): boolean {
  return value === undefined || typeof value !== 'string' || /^-?\d{1,15}$/.test(value)
}

/** Up to MAX_REPORTED problems, one per field, phrased for people (`/toUser is required`). */
function describe (errors: Iterable<ValueError>): FastifySchemaValidationError[] {
  const out: FastifySchemaValidationError[] = []
  const seen = new Set<string>()
  for (const error of errors) {
    if (seen.has(error.path)) continue
    seen.add(error.path)
    out.push({ keyword: ValueErrorType[error.type], instancePath: error.path, schemaPath: '#', params: {}, message: phrase(error) })
    if (out.length === MAX_REPORTED) break
  }
  return out
}

function phrase (error: ValueError): string {
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty: return 'is required'
    case ValueErrorType.ObjectAdditionalProperties: return 'is not a known field'
    case ValueErrorType.Union: return 'has the wrong type'
    default: return error.message
  }
}
