import type { ResolvedOptions } from '../options.js'
import type { EnumLookup } from './message.js'
import { prepareMessage } from './message.js'
import { newMessageId } from './sender.js'
import type { Sender, SendResult } from './sender.js'

export interface SendOptions {
  idempotencyKey?: string
  signal?: AbortSignal
}

/**
 * What happens to a message (DESIGN.md "lib/delivery/"): validated before any call, given an id,
 * delivered with the retry rules, and its outcome reported.
 */
export class Delivery {
  constructor (
    private readonly sender: Sender,
    private readonly options: Pick<ResolvedOptions, 'defaults' | 'validation' | 'retry'>,
    private readonly enumValues?: EnumLookup
  ) {}

  /** `fastify.wechat.send`: calls WeChat now and resolves with `{ id, msgid? }` or rejects with a coded error. */
  async send (message: unknown, options: SendOptions = {}): Promise<SendResult> {
    const prepared = prepareMessage(message, this.options, this.enumValues)
    const id = newMessageId()
    const outcome = await this.sender.deliver(id, prepared.wire, { attempts: this.options.retry.attempts, signal: options.signal })
    if (outcome.status !== 'sent') throw outcome.error
    const result: SendResult = { id }
    if (outcome.msgid !== undefined) result.msgid = outcome.msgid
    if (prepared.changes.length > 0) result.changes = prepared.changes
    return result
  }
}
