import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import Fastify from 'fastify'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { answerUnread } from './dispatch.js'
import { keepContentType, markUnreadable, MAX_BODY_BYTES } from './request.js'
import { httpPage } from './wire.js'

/**
 * The simulator's Fastify server, before its routes (internal). Nothing Fastify would answer on its
 * own reaches a client: WeChat answers errors as HTTP 200 JSON errcodes and unknown paths with its
 * gateway's 404 page, never with `{"statusCode":415,"code":"FST_ERR_…"}`.
 * - Every body is read as raw text, whatever its Content-Type: a malformed one (`json`, empty,
 *   `application/json, text/plain`) was refused with 415 before the endpoint ran. The endpoints look
 *   at the type themselves (`mediaType`).
 * - A body over `MAX_BODY_BYTES` is read to its end and answered by the endpoint as a body it cannot
 *   read (47001, or 41002 on stable_token) instead of Fastify's 413.
 * - A path that is not a valid URL (`/cgi-bin/%ZZ`) is no endpoint: the 404 page, not 400 FST_ERR_BAD_URL.
 * - A request HTTP cannot parse (broken chunked encoding, headers too large) gets the gateway's page.
 * - Any other error before an endpoint ran (a QUERY without a Content-Type) is answered by the endpoint
 *   as an unreadable body, counted and faulted like every request.
 */
export function buildServer (logger: boolean): FastifyInstance {
  const app = Fastify({
    logger,
    forceCloseConnections: true,
    exposeHeadRoutes: false,
    frameworkErrors: (_error, _request, reply) => { notFound(reply) },
    clientErrorHandler: badRequest
  })
  app.addHook('onRequest', (request, _reply, done) => {
    keepContentType(request)
    done()
  })
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (request, payload, done) => {
    const chunks: Buffer[] = []
    let size = 0
    payload.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= MAX_BODY_BYTES) chunks.push(chunk)
    })
    payload.on('end', () => {
      if (size > MAX_BODY_BYTES) markUnreadable(request)
      done(null, size > MAX_BODY_BYTES ? '' : Buffer.concat(chunks).toString('utf8'))
    })
    payload.on('error', (error) => { done(error, undefined) })
  })
  app.setNotFoundHandler(async (_request, reply) => { notFound(reply) })
  app.setErrorHandler(async (error: Error, request: FastifyRequest, reply: FastifyReply) => {
    if (request.raw.destroyed) return reply.hijack() // the client went away mid-body: no one to answer
    if (!await answerUnread(request, reply)) throw error // an error inside an endpoint: a simulator bug, left loud
  })
  return app
}

/** Fastify's default client error handler with the gateway's page instead of its JSON body. */
function badRequest (error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const status = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
  const page = httpPage(status)
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: ${page.contentType}\r\n` +
      `content-length: ${Buffer.byteLength(page.body)}\r\nconnection: close\r\n\r\n${page.body}`)
  }
  socket.destroy(error)
}

function notFound (reply: FastifyReply): void {
  const page = httpPage(404)
  reply.code(404).type(page.contentType).send(page.body)
}
