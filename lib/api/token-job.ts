import type { FastifyInstance } from 'fastify'
import { AsyncTask, SimpleIntervalJob } from 'toad-scheduler'
import type { TokenManager } from './token-manager.js'

/**
 * The scheduled refresh (STYLE.md rule 7): an AsyncTask on `@fastify/schedule`'s scheduler, added
 * on ready and removed on close. A failure is logged and tried again next interval; it never
 * crashes the app, and the app boots even when WeChat is unreachable.
 */
export function scheduleTokenRefresh (fastify: FastifyInstance, tokens: TokenManager, jobId: string, intervalMs: number): void {
  const task = new AsyncTask(
    jobId,
    () => tokens.refreshIfDue(),
    (err) => { fastify.log.warn({ reason: err.message, code: (err as { code?: string }).code }, 'wechat: scheduled token refresh failed; trying again next interval') }
  )
  const job = new SimpleIntervalJob({ milliseconds: intervalMs, runImmediately: true }, task, { id: jobId, preventOverrun: true })
  fastify.addHook('onReady', async () => {
    fastify.scheduler.addSimpleIntervalJob(job)
  })
  fastify.addHook('onClose', async () => {
    if (fastify.scheduler.existsById(jobId)) fastify.scheduler.removeById(jobId)
  })
}
