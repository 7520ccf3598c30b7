/**
 * Fastify's own request lines ("incoming request", and the `req` of an error line) for the push
 * endpoint, with the URL's signatures hidden. In plaintext mode the plain `signature` covers no body
 * (WECHAT.md §6.3), so anyone who reads a push URL in a log can post any body under it until its
 * timestamp leaves the replay window (an audit: the default request line printed it whole). The
 * other fields, and the app's own `req` serializer when it has one, stay as they are.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'

/** The query parameters that authenticate a push or a URL check (§6.2, §6.3). */
const SIGNATURES = /([?&](?:signature|msg_signature)=)[^&#]*/gi

export function hideSignatures (url: string): string {
  return url.replace(SIGNATURES, '$1[hidden]')
}

type ReqSerializer = (req: FastifyRequest) => unknown

/** Fastify's default `req` serializer (lib/logger-pino.js), for a logger that has none of its own. */
function fastifyDefault (req: FastifyRequest): unknown {
  return {
    method: req.method,
    url: req.url,
    version: req.headers?.['accept-version'],
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort
  }
}

/**
 * The route option `logSerializers` of the push routes: the app's `req` serializer (pino keeps it
 * under this symbol) or Fastify's, given the request with its URL hidden; `raw.url` too, for a
 * serializer that reads the Node request.
 */
export function pushLogSerializers (appLog: FastifyBaseLogger): { req: ReqSerializer } {
  const serializers = (appLog as unknown as Record<symbol, Record<string, ReqSerializer> | undefined>)[Symbol.for('pino.serializers')]
  const serialize = serializers?.req ?? fastifyDefault
  return {
    req (req) {
      const url = hideSignatures(req.url)
      const raw = Object.create(req.raw, { url: { value: url, enumerable: true } }) as FastifyRequest['raw']
      return serialize(Object.create(req, { url: { value: url, enumerable: true }, raw: { value: raw, enumerable: true } }) as FastifyRequest)
    }
  }
}
