/**
 * Every Redis key of one mini program shares the hash tag `{appId}`, so each Lua script and
 * pipeline touches one Redis Cluster slot (no CROSSSLOT, unlike WxJava #3378). The AppID is not
 * a secret; no key ever contains the secret or a token.
 */
export interface KeySpace {
  /** what every key of this app starts with (`<prefix>{<appId>}`) */
  root: string
  token: string
  lock: string
  force: string
  /** prefix for BullMQ (it appends its own names after it) */
  queue: string
  record (id: string): string
  idempotency (key: string): string
  stats: string
  byTemplate: string
  errcodes: string
  recent: string
  credit (openid: string): string
  /** that a send's reserve took a credit (credits-redis.ts useCredit with a mark), by message id */
  creditTaken (messageId: string): string
  /** when the latest applied accept (`a:<templateId>`) and change-event reject (`r:<templateId>`) happened, ms */
  creditEvents (openid: string): string
  pushDedupe (key: string): string
  msgid (msgid: string): string
  /** 'sent' messages for receipts without msgid: lex-ordered `toUser|templateId|sentAt|id` (score 0) */
  sentPair: string
  /** the same members scored by sentAt, to prune old ones */
  sentTime: string
  templates: string
  /** one instance fetches the template list for the fleet (templates-catalog.ts) */
  templatesLock: string
}

export function keySpace (prefix: string, appId: string): KeySpace {
  const root = `${prefix}{${appId}}`
  const base = `${root}:`
  return {
    root,
    token: `${base}token`,
    lock: `${base}token:lock`,
    force: `${base}token:force`,
    queue: root,
    record: (id) => `${base}msg:${id}`,
    idempotency: (key) => `${base}idem:${key}`,
    stats: `${base}stats`,
    byTemplate: `${base}stats:template`,
    errcodes: `${base}stats:errcode`,
    recent: `${base}recent:failed`,
    credit: (openid) => `${base}credit:${openid}`,
    creditTaken: (messageId) => `${base}credit-taken:${messageId}`,
    creditEvents: (openid) => `${base}credit-at:${openid}`,
    pushDedupe: (key) => `${base}push:${key}`,
    msgid: (msgid) => `${base}msgid:${msgid}`,
    sentPair: `${base}sent:pair`,
    sentTime: `${base}sent:time`,
    templates: `${base}templates`,
    templatesLock: `${base}templates:lock`
  }
}
