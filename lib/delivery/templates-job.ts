import type { FastifyInstance } from 'fastify'
import { AsyncTask, SimpleIntervalJob } from 'toad-scheduler'
import type { TemplateCatalog } from './templates-catalog.js'

/**
 * The template list's scheduled refresh (STYLE.md rule 7), like the token job: an AsyncTask on
 * `@fastify/schedule`, added on ready, removed on close, `preventOverrun`, failures logged and tried
 * again next interval. It does nothing until the list was first needed, so an app that never sends
 * never calls gettemplate.
 */
export function scheduleTemplateRefresh (fastify: FastifyInstance, catalog: TemplateCatalog, jobId: string, intervalMs: number): void {
  const task = new AsyncTask(
    jobId,
    () => catalog.refreshIfDue(),
    (err) => { fastify.log.warn({ reason: err.message, code: (err as { code?: string }).code }, 'wechat: scheduled template list refresh failed; trying again next interval') }
  )
  const job = new SimpleIntervalJob({ milliseconds: intervalMs, runImmediately: false }, task, { id: jobId, preventOverrun: true })
  fastify.addHook('onReady', async () => {
    fastify.scheduler.addSimpleIntervalJob(job)
  })
  fastify.addHook('onClose', async () => {
    if (fastify.scheduler.existsById(jobId)) fastify.scheduler.removeById(jobId)
  })
}
