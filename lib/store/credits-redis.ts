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

  async addCredits (openid: string, counts: ReadonlyMap<string, number>, once?: { key: string, ttlMs: number }): Promise<void> {
    for (const n of counts.values()) checkCreditCount(n)
    if (counts.size === 0) return
    if (once !== undefined) {
      // One script: the mark that this push's accepts were added, and the adds, or nothing.
      const args = [...counts].flatMap(([templateId, n]) => [templateId, String(n)])
      await this.run((c) => c.wechatPushAddCreditsOnce(this.keys.credit(openid), `${this.keys.pushDedupe(once.key)}:credits`, Math.max(1, Math.ceil(once.ttlMs)), ...args))
      return
    }
    // MULTI on one key: applied together or not at all.
    const results = await this.run((c) => {
      const multi = c.multi()
      for (const [templateId, n] of counts) multi.hincrby(this.keys.credit(openid), templateId, n)
      return multi.exec()
    })
    const failed = results?.find(([err]) => err !== null)
    if (results === null || failed !== undefined) throw failed?.[0] ?? new Error('credits transaction aborted')
  }

  async zeroCredit (openid: string, templateId: string): Promise<void> {
    await this.run((c) => c.hset(this.keys.credit(openid), templateId, 0))
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
