/**
 * WeChat appends a request id to errmsg (`... rid: 64b09fbb-56b7faa9-1054a9fe`, WECHAT.md §0).
 * We branch on errcode only; the rid is pulled out so logs and errors can show it.
 */
const RID = /rid:\s*([0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8})/i

export function extractRid (errmsg: string | undefined): string | undefined {
  if (typeof errmsg !== 'string') return undefined
  return RID.exec(errmsg)?.[1]
}
