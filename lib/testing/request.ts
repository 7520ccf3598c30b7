import type { FastifyRequest } from 'fastify'

/** First value of a query parameter (repeated parameters give their first value). */
export function queryParam (request: FastifyRequest, name: string): string | undefined {
  const value = (request.query as Record<string, string | string[] | undefined>)[name]
  return Array.isArray(value) ? value[0] : value
}

/** Largest body the simulator reads, in bytes (1 MiB, Fastify's default limit). */
export const MAX_BODY_BYTES = 1024 * 1024

const unreadable = new WeakSet<FastifyRequest>()
const contentTypes = new WeakMap<FastifyRequest, string>()

/** Marks the body of a request as one that could not be read (too large, or refused by Fastify). */
export function markUnreadable (request: FastifyRequest): void {
  unreadable.add(request)
}

/**
 * The raw body text (the simulator parses every body itself); '' when there is none; undefined when
 * there was one the simulator could not read (WeChat's data format error, 47001).
 */
export function bodyText (request: FastifyRequest): string | undefined {
  if (unreadable.has(request)) return undefined
  return typeof request.body === 'string' ? request.body : ''
}

/**
 * Keeps the request's Content-Type for `mediaType` and shows Fastify a valid one instead, so that every
 * body, one with a malformed type (`json`, empty, `a, b`) included, reaches the raw-text parser.
 */
export function keepContentType (request: FastifyRequest): void {
  const type = request.raw.headers['content-type']
  if (type === undefined) return
  contentTypes.set(request, type)
  request.raw.headers['content-type'] = 'application/octet-stream'
}

/** The media type the client sent, lower case, without parameters; '' when there is none. */
export function mediaType (request: FastifyRequest): string {
  return (contentTypes.get(request) ?? '').split(';')[0].trim().toLowerCase()
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
