import type { FastifyRequest } from 'fastify'

/** First value of a query parameter (repeated parameters give their first value). */
export function queryParam (request: FastifyRequest, name: string): string | undefined {
  const value = (request.query as Record<string, string | string[] | undefined>)[name]
  return Array.isArray(value) ? value[0] : value
}

/** The raw body text (the simulator parses every body itself); '' when there is none. */
export function bodyText (request: FastifyRequest): string {
  return typeof request.body === 'string' ? request.body : ''
}

/** The media type of the request, lower case, without parameters; '' when there is none. */
export function mediaType (request: FastifyRequest): string {
  return (request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
}

/** A plain JSON object, or undefined when the text is not JSON or not an object. */
export function parseObject (text: string): Record<string, unknown> | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  return isObject(value) ? value : undefined
}

/** Whether a value is a plain object (not null, not an array). */
export function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Length in Unicode characters (a Chinese character counts 1). */
export function charLength (text: string): number {
  return [...text].length
}
