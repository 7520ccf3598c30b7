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
  return (input: unknown) => {
    const value = convert ? Value.Convert(schema, input) : input
    if (check.Check(value)) return { value }
    return { error: describe(check.Errors(value)) }
  }
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
