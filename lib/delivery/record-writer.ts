import { WechatQueueError } from '../errors.js'
import type { Clock, ResolvedOptions } from '../options.js'
import type { MessageRecord, Status } from '../store/records.js'
import type { WechatStore } from '../store/types.js'
import type { PreparedMessage } from './message.js'
import { inFlightTtl } from './record-ttl.js'

export type MessageSource = 'send' | 'queue' | 'hook'

/**
 * What direct sends (delivery.ts) and enqueues (enqueue.ts) share about message records: building
 * one, its timestamps, and the write that creates it under its idempotency key.
 */
export class RecordWriter {
  constructor (
    private readonly store: WechatStore,
    private readonly options: Pick<ResolvedOptions, 'retentionSeconds'> & { clock: Clock }
  ) {}

  /** A record of a message on its way (pending, or sending for a direct send), under its idempotency key. */
  async createRecord (record: MessageRecord, idempotencyKey: string | undefined, delayMs = 0): Promise<{ created: boolean, record: MessageRecord }> {
    try {
      return await this.store.createRecord(record, { ttlSeconds: inFlightTtl(this.options.retentionSeconds, delayMs), idempotencyKey })
    } catch (err) {
      throw new WechatQueueError(`the store is unavailable (${(err as Error).message})`, { cause: err })
    }
  }

  newRecord (id: string, prepared: PreparedMessage, status: Status, source: MessageSource, now = this.nowIso()): MessageRecord {
    return { id, status, templateId: prepared.wire.template_id, toUser: prepared.wire.touser, attempts: 0, createdAt: now, updatedAt: now, source }
  }

  /** The last ISO time made: many sends finish within the same millisecond. */
  private lastIso = { ms: NaN, iso: '' }

  nowIso (): string {
    const ms = this.options.clock.now()
    if (ms !== this.lastIso.ms) this.lastIso = { ms, iso: new Date(ms).toISOString() }
    return this.lastIso.iso
  }
}
