import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger } from 'fastify'
import type { PrivateTemplate, TemplateApi } from '../api/templates.js'
import { toPrivateTemplate } from '../api/templates.js'
import type { Clock } from '../options.js'
import type { WechatStore } from '../store/types.js'
import type { TemplateKind } from './credits.js'
import { parseTemplate } from './templates.js'
import { within } from './within.js'
import type { TemplateRules, TemplateShape } from './templates.js'

export interface CatalogOptions {
  /** how long the shared copy lives in the store, in ms; the job refreshes it after half of that */
  ttlMs: number
  /** validate sends against the list (option `templates.validate`, and `validation` not 'off') */
  validate: boolean
  clock: Clock
  /**
   * The most a send, enqueue or handler push waits for a load of the list (option `timeout`: one
   * call's worth); then it goes on by the key-name rules while the load finishes in the background.
   */
  waitMs: number
}

/** An unknown template id triggers at most one refresh per this long (it may have just been added). */
export const UNKNOWN_REFRESH_MS = 5_000
/** How often the same unknown ids may make us read the shared list while WeChat's refresh is throttled. */
const STORE_RECHECK_MS = 250
/** After a failed load, sends do not wait for the list; it is tried again in the background this often. */
export const RETRY_AFTER_FAILURE_MS = 30_000

/**
 * How long one instance holds the fleet's template-fetch lock, and how long the others wait for the
 * list it stores before fetching themselves (the holder died, or its fetch failed).
 */
export const FETCH_LOCK_MS = 10_000
const FETCH_POLL_MS = 100

const noop = (): void => {}

/**
 * The account's template list, fleet-shared (DESIGN.md data flow: fetched through lib/api, kept in the
 * store, used by validation and credits). Loaded lazily on first use, from the store when another
 * instance put it there, else from WeChat; refreshed by the scheduled job. Each entry is parsed once
 * into a key map, so a warm send costs two in-process map lookups and nothing else. When the list
 * cannot be had, validation falls back to the key-name rules: sends are never blocked by it.
 */
export class TemplateCatalog implements TemplateRules {
  private shapes = new Map<string, TemplateShape>()
  private entries: PrivateTemplate[] = []
  /** the load under way that one send already waited `waitMs` for in vain (bounded()) */
  private slowLoad: Promise<void> | null = null
  /** when the list we hold was fetched from WeChat (by us or by another instance), clock ms */
  private fetchedAt = 0
  private loaded = false
  /** someone needed the list: the job keeps it fresh from then on (an unused catalog costs nothing) */
  private used = false
  /** our last call to gettemplate, clock ms */
  private attemptedAt = -Infinity
  /** the last gettemplate failed: validation is by key names until one succeeds (logged once) */
  private failing = false
  private inflight: Promise<void> | null = null
  /** when unknown ids last made us read the shared list (wall ms; WeChat's refresh is throttled apart), and which */
  private storeChecked: { at: number, ids: ReadonlySet<string>, read: Promise<void> } = { at: -Infinity, ids: new Set(), read: Promise.resolve() }

  constructor (
    private readonly api: TemplateApi,
    private readonly store: WechatStore,
    private readonly options: CatalogOptions,
    private readonly log: FastifyBaseLogger
  ) {}

  /** Validation's view (TemplateLookup): a shape, 'unknown' (40037 locally), or undefined (key-name rules). */
  readonly lookup = (templateId: string): TemplateShape | 'unknown' | undefined => {
    if (!this.options.validate || !this.loaded) return undefined
    const shape = this.shapes.get(templateId)
    if (shape !== undefined) return shape
    // Refuse only on a list we could just confirm; while WeChat fails, let WeChat judge.
    return this.failing ? undefined : 'unknown'
  }

  /** The credits ledger's view (TemplateKindLookup). */
  readonly kindOf = (templateId: string): TemplateKind | undefined => this.shapes.get(templateId)?.kind

  /**
   * Before messages are validated. Warm path (list loaded, every id known): undefined, synchronously.
   * The first use waits for the first load; an unknown id waits for one refresh (throttled); after a
   * failure, nothing waits and the list is retried in the background. No wait is longer than
   * `waitMs`: a gettemplate that hangs (retried, each try up to the timeout) does not hold sends.
   */
  prepare (templateIds: readonly string[]): Promise<void> | undefined {
    this.used = true
    if (!this.loaded) {
      let wait: Promise<void> | undefined
      if (this.inflight !== null) wait = this.inflight.catch(noop)
      else if (!this.failing || this.now() - this.attemptedAt >= RETRY_AFTER_FAILURE_MS) wait = this.background(this.sync(() => !this.loaded))
      // Only the first load is waited for: once WeChat failed, sends go on by the key-name rules.
      return this.options.validate && !this.failing && wait !== undefined ? this.bounded(wait) : undefined
    }
    if (!this.options.validate) return undefined
    const missing = templateIds.filter((id) => !this.shapes.has(id))
    if (missing.length === 0) return undefined
    if (this.inflight) return this.bounded(this.inflight.catch(noop))
    if (this.now() - Math.max(this.fetchedAt, this.attemptedAt) < UNKNOWN_REFRESH_MS) {
      // WeChat was asked a moment ago, but another instance may have asked since (after its add()):
      // the shared list is read before refusing; for the same ids at most every STORE_RECHECK_MS.
      // (sends meanwhile for the same ids wait for that read: it may be about to find them)
      if (Date.now() - this.storeChecked.at < STORE_RECHECK_MS && missing.every((id) => this.storeChecked.ids.has(id))) return this.bounded(this.storeChecked.read)
      const read = this.adoptStoredHolding(missing)
      this.storeChecked = { at: Date.now(), ids: new Set(missing), read }
      return this.bounded(read)
    }
    return this.bounded(this.background(this.sync(() => missing.some((id) => !this.shapes.has(id)) && this.now() - Math.max(this.fetchedAt, this.attemptedAt) >= UNKNOWN_REFRESH_MS)))
  }

  /**
   * A wait for the list that ends after `waitMs` at the latest (the load goes on). A load that
   * outlasted one such wait is not waited for again: the sends after it go on at once.
   */
  private bounded (wait: Promise<void>): Promise<void> | undefined {
    const load = this.inflight
    if (load !== null && load === this.slowLoad) return undefined
    return within(wait, this.options.waitMs).then((settled) => { if (!settled && load !== null && this.inflight === load) this.slowLoad = load })
  }

  /**
   * For the credits ledger (a pop-up's accepts): the kinds of these templates need the list, which
   * only sends loaded before. Waits for the first load when an id is not known yet, even with
   * `validate: false` (the list is kept for credits then too); a list already loaded is not refreshed
   * for it. Undefined when nothing needs waiting for.
   */
  kindsReady (templateIds: readonly string[]): Promise<void> | undefined {
    if (this.loaded || templateIds.every((id) => this.shapes.has(id))) return undefined
    this.used = true
    if (this.inflight !== null) return this.inflight.catch(noop)
    if (this.failing && this.now() - this.attemptedAt < RETRY_AFTER_FAILURE_MS) return undefined
    return this.background(this.sync(() => !this.loaded))
  }

  /** `wechat.templates.list()`: the cached list (loaded on first use), or a fresh one with `refresh`. */
  async list (refresh = false): Promise<PrivateTemplate[]> {
    this.used = true
    if (refresh) await this.refresh()
    else if (!this.loaded) await this.sync(() => !this.loaded)
    return structuredClone(this.entries)
  }

  /** Fetch from WeChat now and share the result (after add/remove, or `wechat.templates.refresh()`). */
  async refresh (): Promise<void> {
    this.used = true
    await this.sync(() => true, false)
  }

  /**
   * The scheduled job's work: adopt a newer list another instance stored, else fetch when ours is
   * older than half the TTL. Nothing before the first use. Throws when WeChat fails (the job logs it).
   */
  async refreshIfDue (): Promise<void> {
    if (!this.used) return
    const due = this.options.ttlMs / 2 * 0.9
    await this.sync(() => !this.loaded || this.now() - this.fetchedAt >= due)
  }

  private now (): number {
    return this.options.clock.now()
  }

  private background (work: Promise<void>): Promise<void> {
    return work.catch(noop)
  }

  /**
   * One at a time per process: read the store (unless `readStore` is false), adopt what is newer than
   * ours, then call WeChat only if `needFetch` still says so, and share what it answered.
   */
  private async sync (needFetch: () => boolean, readStore = true): Promise<void> {
    while (this.inflight !== null) await this.inflight.catch(noop)
    const run = this.syncOnce(needFetch, readStore)
    const tracked: Promise<void> = run.finally(() => { if (this.inflight === tracked) this.inflight = null })
    tracked.catch(noop)
    this.inflight = tracked
    return tracked
  }

  private async syncOnce (needFetch: () => boolean, readStore: boolean): Promise<void> {
    if (readStore) {
      await this.adoptStored()
      if (!needFetch()) return
      // One instance fetches for the fleet (instances starting together each fetched): the others
      // wait for the list it stores. A forced refresh (after add/remove) asks WeChat itself.
      const owner = randomUUID()
      const tryLock = (): Promise<boolean | undefined> => this.store.acquireLock(owner, FETCH_LOCK_MS, 'templates').catch(() => undefined)
      let locked = await tryLock()
      if (locked === false) {
        const held = this.fetchedAt
        const deadline = Date.now() + FETCH_LOCK_MS
        while (locked === false && Date.now() < deadline) {
          await sleep(FETCH_POLL_MS, undefined, { ref: false })
          await this.adoptStored()
          if (!needFetch()) return
          // A list fetched meanwhile by the lock's holder is the fleet's answer, even if it lacks an id
          // a send asked for: asking WeChat again at once would answer the same (throttled as ours).
          if (this.fetchedAt > held) {
            this.attemptedAt = this.now()
            return
          }
          // (the holder finished without a list, or died: its lock is gone, this instance fetches)
          locked = await tryLock()
        }
      }
      try {
        // another instance may have stored a list between our read and our lock
        if (locked === true) await this.adoptStored()
        if (needFetch()) await this.fetchAndShare()
      } finally {
        if (locked === true) await this.store.releaseLock(owner, 'templates').catch(noop)
      }
      return
    }
    if (needFetch()) await this.fetchAndShare()
  }

  /**
   * Adopt the stored list when it is newer than ours, or as old (a fake clock that stands still) and
   * holds one of `ids` we lack. Never rejects: a store error leaves our list.
   */
  private async adoptStoredHolding (ids: readonly string[]): Promise<void> {
    const stored = await this.readStore()
    if (stored === null || stored.fetchedAt < this.fetchedAt) return
    if (stored.fetchedAt > this.fetchedAt || stored.templates.some((entry) => ids.includes(toPrivateTemplate(entry)?.priTmplId as string))) {
      this.adopt(stored.templates, stored.fetchedAt)
    }
  }

  /** Adopt the list another instance stored, when it is newer than ours. */
  private async adoptStored (): Promise<void> {
    const stored = await this.readStore()
    if (stored !== null && (!this.loaded || stored.fetchedAt > this.fetchedAt)) this.adopt(stored.templates, stored.fetchedAt)
  }

  private async fetchAndShare (): Promise<void> {
    this.attemptedAt = this.now()
    let templates: PrivateTemplate[]
    try {
      templates = await this.api.list()
    } catch (err) {
      if (!this.failing) {
        this.failing = true
        this.log.warn({ reason: (err as Error).message, code: (err as { code?: string }).code, errcode: (err as { errcode?: number }).errcode },
          this.loaded
            ? 'wechat: the template list could not be refreshed; validating against the last known list'
            : 'wechat: the template list could not be fetched; validating by keyword names until it can')
      }
      throw err
    }
    if (this.failing) {
      this.failing = false
      this.log.info({ templates: templates.length }, 'wechat: the template list was fetched again; validating against it')
    }
    const fetchedAt = this.now()
    this.adopt(templates, fetchedAt)
    try {
      await this.store.putTemplates({ fetchedAt, templates }, Math.ceil(this.options.ttlMs / 1000))
    } catch (err) {
      this.log.debug({ reason: (err as Error).message }, 'wechat: could not share the template list through the store')
    }
  }

  private async readStore (): Promise<{ fetchedAt: number, templates: unknown[] } | null> {
    try {
      return await this.store.getTemplates()
    } catch (err) {
      this.log.debug({ reason: (err as Error).message }, 'wechat: could not read the shared template list')
      return null
    }
  }

  /** Parse once: entries for list(), shapes for validation and credits. */
  private adopt (raw: readonly unknown[], fetchedAt: number): void {
    const entries = raw.flatMap((entry) => {
      const template = toPrivateTemplate(entry)
      return template === undefined ? [] : [template]
    })
    this.entries = entries
    this.shapes = new Map(entries.map((t) => [t.priTmplId, parseTemplate(t)]))
    this.fetchedAt = fetchedAt
    this.loaded = true
  }
}
