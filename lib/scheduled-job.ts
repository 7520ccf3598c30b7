import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { AsyncTask, SimpleIntervalJob } from 'toad-scheduler'
import { WechatOptionsError } from './errors.js'

export interface ScheduledJobOptions {
  /** `wechat:<what>:<appId>[:<namespace>]`, unique per registration */
  id: string
  intervalMs: number
  /** run once at boot too (the token job warms the cache) */
  runImmediately: boolean
  /** what failed, for the log line */
  what: string
  work: () => Promise<void>
}

/**
 * A scheduled job the way STYLE.md rule 7 wants it: an AsyncTask on `@fastify/schedule`'s scheduler,
 * added on ready, removed on close, `preventOverrun`, a failure logged and tried again next interval,
 * never a crash. The job's work is a plain function that tests can call directly. `log` is the
 * plugin's logger, so a failure carries its bindings (plugin, appId, namespace).
 */
export function scheduleJob (fastify: FastifyInstance, log: FastifyBaseLogger, options: ScheduledJobOptions): void {
  const task = new AsyncTask(
    options.id,
    options.work,
    (err) => {
      // A held token error (token-hold.ts) was logged when WeChat gave it; repeating it every interval is noise.
      const level = (err as { held?: boolean }).held === true ? 'debug' : 'warn'
      log[level]({ reason: err.message, code: (err as { code?: string }).code, job: options.id }, `wechat: scheduled ${options.what} failed; trying again next interval`)
    }
  )
  const job = new SimpleIntervalJob({ milliseconds: options.intervalMs, runImmediately: options.runImmediately }, task, { id: options.id, preventOverrun: true })
  fastify.addHook('onReady', async () => {
    // Two registrations of one AppID in sibling contexts share a scheduler registered at the root:
    // a coded error rather than toad-scheduler's own.
    if (fastify.scheduler.existsById(options.id)) throw new WechatOptionsError(`another registration of this AppID (and namespace) already runs the job ${options.id} on this app's scheduler; give each registration its own namespace`)
    fastify.scheduler.addSimpleIntervalJob(job)
  })
  fastify.addHook('onClose', async () => {
    if (fastify.scheduler.existsById(options.id)) fastify.scheduler.removeById(options.id)
  })
}
