/**
 * WeChat appends a request id to errmsg (`... rid: 64b09fbb-56b7faa9-1054a9fe`, WECHAT.md §0); older
 * answers carried `hint: [xxxxxx]` instead, which is pulled out the same way (the id to quote to
 * WeChat's support for those). We branch on errcode only; the id is for logs and errors.
 */
const RID = /rid:\s*([0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8})/i
const HINT = /hint:\s*\[([^\]\s]{1,64})\]/

export function extractRid (errmsg: string | undefined): string | undefined {
  if (typeof errmsg !== 'string') return undefined
  return RID.exec(errmsg)?.[1] ?? HINT.exec(errmsg)?.[1]
}
