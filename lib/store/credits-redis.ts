import type { KeySpace } from './keys.js'
import { checkCreditCount } from './records.js'
import type { CreditStore } from './records.js'
import type { Run } from './record-writes.js'

/** The Redis store's one-time subscription credits: one hash per openid, a field per template. */
export class RedisCredits implements CreditStore {
  /** `run` sends the queued record writes first (RedisRecords.run), so credits are ordered after them */
  constructor (private readonly run: Run, private readonly keys: KeySpace) {}

  async addCredit (openid: string, templateId: string, n: number): Promise<number> {
    checkCreditCount(n)
    return this.run((c) => c.hincrby(this.keys.credit(openid), templateId, n))
  }

  async addCredits (openid: string, counts: ReadonlyMap<string, number>, once?: { key: string, ttlMs: number }, at?: number): Promise<void> {
    for (const n of counts.values()) checkCreditCount(n)
    if (counts.size === 0) return
    // One script: the mark that this push's accepts were added (with `once`), and the adds, or nothing.
    const keys = [this.keys.credit(openid), this.keys.creditEvents(openid)]
    if (once !== undefined) keys.push(`${this.keys.pushDedupe(once.key)}:credits`)
    const args = [at === undefined ? '' : String(Math.floor(at)), String(Math.max(1, Math.ceil(once?.ttlMs ?? 1)))]
    for (const [templateId, n] of counts) args.push(templateId, String(n))
    await this.run((c) => c.wechatPushAddCredits(keys.length, ...keys, ...args))
  }

  async zeroCredit (openid: string, templateId: string, at?: number): Promise<boolean> {
    if (at === undefined) {
      await this.run((c) => c.hset(this.keys.credit(openid), templateId, 0))
      return true
    }
    return await this.run((c) => c.wechatPushRejectCredit(this.keys.credit(openid), this.keys.creditEvents(openid), templateId, String(Math.floor(at)))) === 1
  }

  async useCredit (openid: string, templateId: string, enforce: boolean, mark?: { id: string, ttlMs: number }): Promise<{ ok: boolean, remaining: number }> {
    const keys = mark === undefined ? [this.keys.credit(openid)] : [this.keys.credit(openid), this.keys.creditTaken(mark.id)]
    const [ok, remaining] = await this.run((c) => c.wechatPushUseCredit(keys.length, ...keys, templateId, enforce ? 1 : 0, Math.max(1, Math.ceil(mark?.ttlMs ?? 1)))) as [number, number]
    return { ok: ok === 1, remaining }
  }

  async refundMarked (openid: string, templateId: string, markId: string): Promise<void> {
    await this.run((c) => c.wechatPushRefundMarked(this.keys.credit(openid), this.keys.creditTaken(markId), templateId))
  }

  async refundCredit (openid: string, templateId: string): Promise<void> {
    await this.run((c) => c.hincrby(this.keys.credit(openid), templateId, 1))
  }

  async getCredits (openid: string): Promise<Record<string, number>> {
    const hash = await this.run((c) => c.hgetall(this.keys.credit(openid)))
    return Object.fromEntries(Object.entries(hash).map(([templateId, n]) => [templateId, Number(n)]))
  }
}
