import type { ApiAnswer, WechatApi } from './wechat-api.js'

/** The wire form of a subscribe message (WECHAT.md §2.1): snake_case, every value a string. */
export interface WireMessage {
  touser: string
  template_id: string
  page?: string
  miniprogram_state?: 'developer' | 'trial' | 'formal'
  lang?: 'zh_CN' | 'en_US' | 'zh_HK' | 'zh_TW'
  data: Record<string, { value: string }>
}

export const SUBSCRIBE_SEND_PATH = '/cgi-bin/message/subscribe/send'

/** One call of subscribe/send. `msgid`, when WeChat sends one, stays a decimal string (WECHAT.md §2.2). */
export async function subscribeSend (api: WechatApi, message: WireMessage, signal?: AbortSignal): Promise<ApiAnswer & { msgid?: string }> {
  const answer: ApiAnswer & { msgid?: string } = await api.call('POST', SUBSCRIBE_SEND_PATH, { json: message, signal })
  answer.msgid = msgidOf(answer.body.msgid)
  return answer
}

/**
 * The msgid as decimal digits (json.ts already turned a large or `.0` number into them), or none: a
 * value that is no integer (true, an object, text) is not made into one ('true', '[object Object]').
 */
function msgidOf (value: unknown): string | undefined {
  if (typeof value === 'string') return /^\d{1,40}$/.test(value) ? value : undefined
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? String(value) : undefined
}
