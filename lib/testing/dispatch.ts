import { finished } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { SimContext } from './context.js'
import { markUnreadable, queryParam } from './request.js'
import type { SimEndpoint, SimFault } from './types.js'
import { httpPage, json, ok, withRid, wxError } from './wire.js'
import type { WireResponse } from './wire.js'

/** What a route's own logic sees besides the request. */
export interface CallInfo {
  /** The fault being applied with `processed: true`, or a delay-only fault. */
  fault: SimFault | undefined
}

/** A route's own logic: synchronous, in-memory, returns the exact answer. */
export type EndpointLogic = (request: FastifyRequest, call: CallInfo) => WireResponse

/** How an endpoint is called. */
export interface EndpointSpec {
  /** The one HTTP method the endpoint accepts; the other gets 43002 "require <method> method". */
  method: 'GET' | 'POST'
  /** Whether it is a business API taking `access_token` in the query. */
  auth: boolean
}

/** A simulated endpoint's route handler. */
export type EndpointHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<void>

/**
 * Serves an endpoint on every method Fastify knows (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, …):
 * the one it needs gets the endpoint's answer, any other 43002 `require <method> method`, counted and
 * faulted like every request. Registered for GET and POST only, the others got the 404 page, uncounted.
 */
export function serve (app: FastifyInstance, url: string, handler: EndpointHandler): void {
  app.route({ method: app.supportedMethods, url, handler })
}

const started = new WeakSet<FastifyRequest>()

/**
 * Answers a request Fastify refused before its endpoint ran (an error of its own, e.g. a QUERY without
 * a Content-Type): the endpoint answers it as a request whose body could not be read, counted and
 * faulted like any other. False when there is no endpoint to do so (an unknown path, or the error came
 * from inside the endpoint). Every route of the simulator's server is an endpoint.
 */
export async function answerUnread (request: FastifyRequest, reply: FastifyReply): Promise<boolean> {
  if (request.is404 || started.has(request)) return false
  markUnreadable(request)
  await (request.routeOptions.handler as EndpointHandler)(request, reply)
  return true
}

/**
 * Wraps an endpoint's logic with what every endpoint does: count the request, apply the next fault,
 * check method and token, add latency, write the exact body and log the answer.
 */
export function endpoint (ctx: SimContext, name: SimEndpoint, spec: EndpointSpec, logic: EndpointLogic): EndpointHandler {
  return async function handler (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    started.add(request)
    ctx.counters[name]++
    const at = ctx.clock.now()
    const fault = ctx.faults.take(name)
    const imposed = fault === undefined ? undefined : faultAnswer(fault, request)
    // A fault that replaces the answer leaves the state alone, unless it says the request was processed.
    const intercepted = fault?.drop === true || imposed !== undefined
    const normal = intercepted && fault?.processed !== true
      ? undefined
      : precheck(ctx, spec, request) ?? logic(request, { fault })
    const log = { endpoint: name, host: request.headers.host ?? '', at }
    const wait = ctx.latencyMs + (fault?.delayMs ?? 0)
    try {
      if (wait > 0) await sleep(wait, undefined, { signal: ctx.closing })
    } catch {
      return drop(request, reply) // closing: pending answers are never sent
    }
    const answer = imposed ?? normal
    // What the request's own logic set off (a processed request included: its answer is lost or
    // replaced, the effect stays) follows this request's answer, never another request's.
    const then = normal?.then
    if (fault?.drop === true || answer === undefined) {
      ctx.requests.push({ ...log, httpStatus: 0 })
      drop(request, reply)
      then?.()
      return
    }
    ctx.requests.push(answer.errcode === undefined
      ? { ...log, httpStatus: answer.status }
      : { ...log, errcode: answer.errcode, httpStatus: answer.status })
    // Written raw so the headers and body are exactly WeChat's (Fastify would rewrite the content type).
    reply.hijack()
    if (then !== undefined) finished(reply.raw, () => { then() })
    reply.raw.writeHead(answer.status, { 'content-type': answer.contentType, 'content-length': Buffer.byteLength(answer.body) })
    reply.raw.end(answer.body)
  }
}

/**
 * The answer a fault imposes, or undefined when the normal answer should go out (delay or drop only).
 * An error status alone is the gateway's HTML page; with an errcode or errmsg it carries WeChat's JSON
 * body under that status (a gateway or proxy that answers 4xx with the errcode), for the app's reading of it.
 */
function faultAnswer (fault: SimFault, request: FastifyRequest): WireResponse | undefined {
  const status = fault.httpStatus ?? 200
  const body = faultBody(fault, request)
  if (status === 200) return body
  return body === undefined ? httpPage(status) : { ...body, status }
}

function faultBody (fault: SimFault, request: FastifyRequest): WireResponse | undefined {
  const errcode = fault.errcode ?? (fault.errmsg !== undefined ? -1 : undefined)
  if (errcode === undefined) return undefined
  if (fault.errmsg !== undefined) return json({ errcode, errmsg: fault.errmsg }, errcode)
  if (errcode === 0) return ok()
  if (errcode === 40164) {
    const ip = request.ip.replace(/^::ffff:/, '')
    return json({ errcode, errmsg: withRid(`invalid ip ${ip} ipv6 ::ffff:${ip}, not in whitelist`) }, errcode)
  }
  return wxError(errcode)
}

/** Method and token checks common to every endpoint. */
function precheck (ctx: SimContext, spec: EndpointSpec, request: FastifyRequest): WireResponse | undefined {
  // WECHAT.md has one wrong-method code, 43002 (§0, and §1.3 for the token endpoints, cgi-bin/token
  // being GET-only); the text names the method the endpoint needs, so a POST to a GET endpoint is not
  // told to "require POST method". (WeChat's own 43001 for GET endpoints is not in WECHAT.md.)
  if (request.method !== spec.method) return wxError(43002, `require ${spec.method} method`)
  if (!spec.auth) return undefined
  switch (ctx.tokens.check(queryParam(request, 'access_token'))) {
    case 'missing': return wxError(41001)
    case 'malformed': return wxError(40014)
    case 'unknown': case 'superseded': return wxError(40001)
    case 'expired': return wxError(42001)
    default: return undefined
  }
}

function drop (request: FastifyRequest, reply: FastifyReply): void {
  reply.hijack()
  request.raw.socket.destroy()
}
