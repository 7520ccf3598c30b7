import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, InjectOptions, LightMyRequestResponse } from 'fastify'
import { buildApp } from './helpers/app.js'
import type { AppOptions, Teardown } from './helpers/app.js'
import type { WechatSimulator } from '../lib/testing/index.js'

export const TOKEN = 's3cret'
export const AUTH = `Bearer ${TOKEN}`

/**
 * The kind of hook a user writes: a Bearer header, or `?token=` for the dashboard page (a browser
 * sends no Authorization header when the page is opened from a link).
 */
export function bearerAuth (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const query = request.query as { token?: string }
  if (request.headers.authorization === AUTH || query.token === TOKEN) return done()
  reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'a valid Bearer token is required' })
}

export interface RoutesAppOptions extends AppOptions {
  routes?: Record<string, unknown>
}

/** An app with the routes on, guarded by bearerAuth unless `routes` says otherwise. */
export async function routesApp (t: Teardown, sim: WechatSimulator, options: RoutesAppOptions = {}): Promise<FastifyInstance> {
  return buildApp(t, sim, { ...options, plugin: { routes: { onRequest: bearerAuth, ...options.routes }, ...options.plugin } })
}

/** app.inject with the right credentials unless the test overrides the headers. */
export async function call (app: FastifyInstance, method: 'GET' | 'POST', url: string, extra: Partial<InjectOptions> = {}): Promise<LightMyRequestResponse> {
  return app.inject({ method, url, ...extra, headers: { authorization: AUTH, ...extra.headers } } as InjectOptions)
}

export async function postJson (app: FastifyInstance, url: string, body: unknown): Promise<LightMyRequestResponse> {
  return call(app, 'POST', url, { payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
}

export async function waitFor<T> (probe: () => Promise<T | undefined | null | false>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value) return value
    if (Date.now() > deadline) throw new Error('waitFor: timed out')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** mulberry32: a small seeded PRNG, so a failing random body can be reproduced from its seed. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
