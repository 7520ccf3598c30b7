import { randomBytes } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { StatsSnapshot } from '../store/records.js'
import { dashboardPage } from './dashboard-page.js'
import { DashboardQuery, responses, routeSchema } from './schemas.js'
import type { DashboardQueryType } from './schemas.js'

export interface DashboardDeps {
  appId: string
  /** the full path of GET {prefix}/stats, which the page polls */
  statsUrl: string
  stats: () => Promise<StatsSnapshot>
}

export const DEFAULT_REFRESH_SECONDS = 5

/**
 * Everything the page needs is inline, so the policy can forbid every other source: scripts and
 * styles only with this response's nonce, fetches only to our own origin, no framing (the page
 * may carry a token in its URL), no referrer, no caching.
 */
export function contentSecurityPolicy (nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src 'nonce-${nonce}'`,
    "connect-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'"
  ].join('; ')
}

/** GET {prefix}/dashboard: one self-contained status page (it renders and refreshes itself). */
export function registerDashboard (child: FastifyInstance, deps: DashboardDeps): void {
  child.get<{ Querystring: DashboardQueryType }>('/dashboard', {
    schema: routeSchema({
      summary: 'A self-contained HTML status page that refreshes itself from /stats',
      querystring: DashboardQuery,
      response: responses({
        200: { description: 'the status page', content: { 'text/html': { schema: Type.String() } } }
      }, [400, 500, 503])
    })
  }, async (request, reply) => {
    // Read first: if the store is down, the JSON error goes out without the page's headers.
    const stats = await deps.stats()
    const nonce = randomBytes(18).toString('base64')
    const page = dashboardPage({
      appId: deps.appId,
      statsUrl: deps.statsUrl,
      refreshMs: (request.query.refresh ?? DEFAULT_REFRESH_SECONDS) * 1000,
      stats,
      nonce
    })
    return reply
      .header('content-security-policy', contentSecurityPolicy(nonce))
      .header('cache-control', 'no-store')
      .header('referrer-policy', 'no-referrer')
      .header('x-content-type-options', 'nosniff')
      .header('x-frame-options', 'DENY')
      .type('text/html; charset=utf-8')
      .send(page)
  })
}
