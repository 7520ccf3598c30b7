import type { SimulatorClock } from './clock.js'
import type { FaultQueue } from './faults.js'
import type { PushTiming } from './push-delivery.js'
import type { QuotaBook } from './quota.js'
import type { TokenIssuer } from './tokens.js'
import type { SimAcceptedMessage, SimEndpoint, SimRequestRecord, SimTemplate } from './types.js'

/** The simulator's state, shared by its routes (internal). */
export interface SimContext {
  readonly appId: string
  readonly appSecret: string
  readonly clock: SimulatorClock
  readonly tokens: TokenIssuer
  /** subscribe/send's daily quota and the monthly quota resets (WECHAT.md §8.1) */
  readonly quota: QuotaBook
  readonly faults: FaultQueue
  readonly credits: CreditBook
  readonly templates: Map<string, SimTemplate>
  readonly counters: Record<SimEndpoint, number>
  readonly requests: SimRequestRecord[]
  readonly accepted: SimAcceptedMessage[]
  /** Valid openids, or undefined when any well-formed openid is valid. */
  readonly openids: ReadonlySet<string> | undefined
  /** Pages of the released version, or undefined when any page is accepted. */
  readonly pages: ReadonlySet<string> | undefined
  readonly returnMsgid: boolean
  readonly requireCredits: boolean
  /** Which body encodings addtemplate reads (WECHAT.md §4.5 UNCERTAIN); the other answers 47001. */
  readonly addTemplateEncoding: 'form' | 'json' | 'both'
  /** SimulatorOptions.shortThingMax */
  readonly shortThingMax: number
  /** Aborted on close, to cut short pending delays. */
  readonly closing: AbortSignal
  /** Per-attempt timeout and pause between attempts of pushes to the app. */
  readonly pushTiming: PushTiming
  /** Wall-clock latency added to every answer. */
  latencyMs: number
  /** Next msgid to hand out. */
  nextMsgid: bigint
}

/** Send credits per (openid, template id) for one-time templates. */
export class CreditBook {
  readonly #credits = new Map<string, number>()

  /** Adds `n` credits. */
  grant (openid: string, templateId: string, n: number): void {
    this.#credits.set(key(openid, templateId), this.count(openid, templateId) + n)
  }

  /** Remaining credits. */
  count (openid: string, templateId: string): number {
    return this.#credits.get(key(openid, templateId)) ?? 0
  }

  /** Uses one credit; false when there is none. */
  use (openid: string, templateId: string): boolean {
    const n = this.count(openid, templateId)
    if (n < 1) return false
    this.#credits.set(key(openid, templateId), n - 1)
    return true
  }

  /** Zeroes the credits of one user and template (a rejection, WECHAT.md §7.2). */
  revoke (openid: string, templateId: string): void {
    this.#credits.delete(key(openid, templateId))
  }

  /** Forgets every credit. */
  clear (): void {
    this.#credits.clear()
  }
}

function key (openid: string, templateId: string): string {
  return `${openid}\u0000${templateId}`
}
