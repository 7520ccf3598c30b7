import { checkCreditCount } from './records.js'
import type { CreditStore } from './records.js'

/** The memory store's one-time subscription credits: per openid, a count per template. */
export class MemoryCredits implements CreditStore {
  private readonly credits = new Map<string, Map<string, number>>()

  async addCredit (openid: string, templateId: string, n: number): Promise<number> {
    checkCreditCount(n)
    const count = this.creditsOf(openid).get(templateId) ?? 0
    this.creditsOf(openid).set(templateId, count + n)
    return count + n
  }

  /** when each `once` key of addCredits stops being remembered (ms) */
  private readonly applied = new Map<string, number>()

  /** per openid, `a:<templateId>` / `r:<templateId>`: the latest accept / reject applied (ms) */
  private readonly events = new Map<string, Map<string, number>>()

  async addCredits (openid: string, counts: ReadonlyMap<string, number>, once?: { key: string, ttlMs: number }, at?: number): Promise<void> {
    for (const n of counts.values()) checkCreditCount(n)
    if (once !== undefined) {
      const now = Date.now()
      if ((this.applied.get(once.key) ?? 0) > now) return
      // (expired keys are dropped as new ones come: the map holds about a TTL's worth of pushes)
      for (const [key, until] of this.applied) { if (until > now) break; this.applied.delete(key) }
      this.applied.delete(once.key)
      this.applied.set(once.key, now + once.ttlMs)
    }
    for (const [templateId, n] of counts) {
      if (at !== undefined) {
        const events = this.eventsOf(openid)
        // an accept from before the latest reject was voided by it (its push came late)
        if (at < (events.get(`r:${templateId}`) ?? 0)) continue
        events.set(`a:${templateId}`, Math.max(at, events.get(`a:${templateId}`) ?? 0))
      }
      await this.addCredit(openid, templateId, n)
    }
  }

  async zeroCredit (openid: string, templateId: string, at?: number): Promise<boolean> {
    if (at !== undefined) {
      const events = this.eventsOf(openid)
      // a reject older than an accept already applied came late: that accept stands
      if (at < (events.get(`a:${templateId}`) ?? 0)) return false
      events.set(`r:${templateId}`, Math.max(at, events.get(`r:${templateId}`) ?? 0))
    }
    this.creditsOf(openid).set(templateId, 0)
    return true
  }

  private eventsOf (openid: string): Map<string, number> {
    let events = this.events.get(openid)
    if (!events) this.events.set(openid, events = new Map())
    return events
  }

  async useCredit (openid: string, templateId: string, enforce: boolean): Promise<{ ok: boolean, remaining: number }> {
    const credits = this.credits.get(openid)
    const count = credits?.get(templateId) ?? 0
    if (credits && count > 0) {
      credits.set(templateId, count - 1)
      return { ok: true, remaining: count - 1 }
    }
    return { ok: !enforce, remaining: 0 }
  }

  /** (in process, a use that was not answered did not happen: nothing to give back) */
  async refundMarked (): Promise<void> {}

  async refundCredit (openid: string, templateId: string): Promise<void> {
    await this.addCredit(openid, templateId, 1)
  }

  async getCredits (openid: string): Promise<Record<string, number>> {
    return Object.fromEntries(this.credits.get(openid) ?? [])
  }

  private creditsOf (openid: string): Map<string, number> {
    let credits = this.credits.get(openid)
    if (!credits) this.credits.set(openid, credits = new Map())
    return credits
  }
}
