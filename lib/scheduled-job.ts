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
  claimJobId(fastify.scheduler, options.id)
  // A run that close() cut short (its WeChat call aborted) did not fail: no warning for it.
  let closing = false
  fastify.addHook('preClose', (done) => { closing = true; done() })
  const task = new AsyncTask(
    options.id,
    options.work,
    (err) => {
      // A held token error (token-hold.ts) was logged when WeChat gave it; repeating it every interval is noise.
      const level = closing || (err as { held?: boolean }).held === true ? 'debug' : 'warn'
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
    CLAIMED.get(fastify.scheduler)?.delete(options.id)
    if (fastify.scheduler.existsById(options.id)) fastify.scheduler.removeById(options.id)
  })
}

/** The job ids each scheduler has been promised, by registrations that have not all booted yet. */
const CLAIMED = new WeakMap<object, Set<string>>()

/**
 * Two registrations of one AppID in sibling contexts sharing a scheduler registered at the root are
 * refused at registration, not when the second one's onReady adds its job: by then the first one's
 * jobs run, and a failed boot would leave their timers keeping the process alive.
 */
function claimJobId (scheduler: object, id: string): void {
  let ids = CLAIMED.get(scheduler)
  if (ids === undefined) CLAIMED.set(scheduler, ids = new Set())
  if (ids.has(id)) throw new WechatOptionsError(`another registration of this AppID (and namespace) already runs the job ${id} on this app's scheduler; give each registration its own namespace`)
  ids.add(id)
}
