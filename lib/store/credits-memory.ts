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

  async addCredits (openid: string, counts: ReadonlyMap<string, number>): Promise<void> {
    for (const n of counts.values()) checkCreditCount(n)
    for (const [templateId, n] of counts) await this.addCredit(openid, templateId, n)
  }

  async zeroCredit (openid: string, templateId: string): Promise<void> {
    this.creditsOf(openid).set(templateId, 0)
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
