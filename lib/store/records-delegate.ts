import type {
  CreateRecordOptions, CreditStore, MessageRecord, MessageRecordStore, RecordPatch, StatsSnapshot, UpdateRecordOptions
} from './records.js'

/**
 * Base of both stores: the records and credits of `WechatStore` forwarded to the store's `records`
 * (MemoryRecords or RedisRecords) and `credits` (MemoryCredits or RedisCredits), written once.
 */
export abstract class RecordsDelegate implements MessageRecordStore, CreditStore {
  protected abstract readonly records: MessageRecordStore
  protected abstract readonly credits: CreditStore

  createRecord (record: MessageRecord, opts: CreateRecordOptions): Promise<{ created: boolean, record: MessageRecord }> {
    return this.records.createRecord(record, opts)
  }

  updateRecord (id: string, patch: RecordPatch, opts: UpdateRecordOptions): Promise<MessageRecord | null> {
    return this.records.updateRecord(id, patch, opts)
  }

  discardRecord (id: string, status?: 'pending' | 'sending', idempotencyKey?: string): Promise<boolean> {
    return this.records.discardRecord(id, status, idempotencyKey)
  }

  releaseIdempotencyKey (key: string, id: string): Promise<void> {
    return this.records.releaseIdempotencyKey(key, id)
  }

  getRecord (id: string): Promise<MessageRecord | null> {
    return this.records.getRecord(id)
  }

  findByMsgid (msgid: string): Promise<string | null> {
    return this.records.findByMsgid(msgid)
  }

  findSentMatch (toUser: string, templateId: string, aroundMs: number, windowMs: number): Promise<string | null> {
    return this.records.findSentMatch(toUser, templateId, aroundMs, windowMs)
  }

  stats (): Promise<StatsSnapshot> {
    return this.records.stats()
  }

  addCredit (openid: string, templateId: string, n: number): Promise<number> {
    return this.credits.addCredit(openid, templateId, n)
  }

  addCredits (openid: string, counts: ReadonlyMap<string, number>, once?: { key: string, ttlMs: number }, at?: number): Promise<void> {
    return this.credits.addCredits(openid, counts, once, at)
  }

  zeroCredit (openid: string, templateId: string, at?: number): Promise<boolean> {
    return this.credits.zeroCredit(openid, templateId, at)
  }

  useCredit (openid: string, templateId: string, enforce: boolean, mark?: { id: string, ttlMs: number }): Promise<{ ok: boolean, remaining: number }> {
    return this.credits.useCredit(openid, templateId, enforce, mark)
  }

  refundMarked (openid: string, templateId: string, markId: string): Promise<void> {
    return this.credits.refundMarked(openid, templateId, markId)
  }

  refundCredit (openid: string, templateId: string): Promise<void> {
    return this.credits.refundCredit(openid, templateId)
  }

  getCredits (openid: string): Promise<Record<string, number>> {
    return this.credits.getCredits(openid)
  }
}
