import { NO_CONSENT_ERRCODE, RECENT_FAILURES_CAP, SENT_INDEX_CAP, SEP, STATUSES, TRANSITIONS } from './records.js'

/**
 * The records' Lua: each multi-step update is one script, every key it touches is passed in KEYS
 * (all under one `{appId}` hash tag, so one Cluster slot), none is built inside Lua. The transition
 * table and caps are generated from records.ts, so both stores follow the same rules.
 *
 * KEYS layout shared by create and update:
 *   1 record hash, 2 stats hash, 3 byTemplate hash, 4 errcodes hash, 5 recent-failures list,
 *   6 sent index by pair (lex), 7 sent index by time; then the optional keys named by ARGV flags.
 */
const ALLOWED = `{ ${STATUSES.map((from) => `${from} = { ${TRANSITIONS[from].map((to) => `${to} = true`).join(', ')} }`).join(', ')} }`

const PRELUDE = `
local ALLOWED = ${ALLOWED}
local FAILURE = { failed = true, unknown = true }
local SEP = '${SEP}'
local K = { record = KEYS[1], stats = KEYS[2], byTemplate = KEYS[3], errcodes = KEYS[4], recent = KEYS[5], sentPair = KEYS[6], sentTime = KEYS[7] }

local function toTable (flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function zremBoth (members)
  if #members > 0 then
    redis.call('ZREM', K.sentPair, unpack(members))
    redis.call('ZREM', K.sentTime, unpack(members))
  end
end

-- counters and indexes of a move from old (false: a new record) to new; sent = {ms, padded ms, cutoff ms}
local function enter (rec, old, new, at, ttl, sent, newErrcode)
  if old == new then return end
  if old then
    redis.call('HINCRBY', K.stats, old, -1)
    redis.call('HINCRBY', K.byTemplate, rec.templateId .. SEP .. old, -1)
  end
  redis.call('HINCRBY', K.stats, new, 1)
  redis.call('HINCRBY', K.byTemplate, rec.templateId .. SEP .. new, 1)
  if FAILURE[new] then
    local entry = { id = rec.id, templateId = rec.templateId, at = at, errmsg = rec.errmsg }
    if rec.errcode then
      entry.errcode = tonumber(rec.errcode)
      if newErrcode or not old or not FAILURE[old] then
        redis.call('HINCRBY', K.errcodes, rec.errcode, 1)
        if entry.errcode == ${NO_CONSENT_ERRCODE} then redis.call('HINCRBY', K.stats, 'noConsent', 1) end
      end
    end
    redis.call('LPUSH', K.recent, cjson.encode(entry))
    redis.call('LTRIM', K.recent, 0, ${RECENT_FAILURES_CAP - 1})
  end
  local pair = rec.toUser .. SEP .. rec.templateId .. SEP
  if old == 'sent' and rec.sentAt then
    zremBoth({ pair .. rec.sentAt .. SEP .. rec.id })
    redis.call('HDEL', K.record, 'sentAt')
  end
  -- receipts find a message by msgid when WeChat returned one; the pair index is only for the rest
  if new == 'sent' and not rec.msgid then
    local member = pair .. sent[2] .. SEP .. rec.id
    redis.call('HSET', K.record, 'sentAt', sent[2])
    redis.call('ZADD', K.sentPair, 0, member)
    redis.call('ZADD', K.sentTime, sent[1], member)
    local lo, hi = '[' .. pair, '(' .. pair .. '\\255'
    local count = redis.call('ZLEXCOUNT', K.sentPair, lo, hi)
    if count > ${SENT_INDEX_CAP} then
      zremBoth(redis.call('ZRANGEBYLEX', K.sentPair, lo, hi, 'LIMIT', 0, count - ${SENT_INDEX_CAP}))
    end
    zremBoth(redis.call('ZRANGEBYSCORE', K.sentTime, '-inf', sent[3], 'LIMIT', 0, 100))
    redis.call('EXPIRE', K.sentPair, ttl)
    redis.call('EXPIRE', K.sentTime, ttl)
  end
end
`

export const RECORD_SCRIPTS = {
  wechatPushCreateRecord: {
    // KEYS: the shared 7, then [idempotency] [msgid].
    // ARGV: ttl s, sentAt ms, sentAt padded, cutoff ms, has idempotency, has msgid,
    //       id of a stale mapping that may be replaced ('' none), then the record's field/value pairs.
    lua: `${PRELUDE}
local n = 8
local idem, msgidKey
if ARGV[5] == '1' then idem = KEYS[n]; n = n + 1 end
if ARGV[6] == '1' then msgidKey = KEYS[n] end
local existing = redis.call('HGETALL', K.record)
if #existing > 0 then return { 0, existing } end
if idem then
  local id = redis.call('GET', idem)
  if id and id ~= ARGV[7] then return { 2, id } end
end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
local rec = toTable(fields)
local ttl = tonumber(ARGV[1])
redis.call('HSET', K.record, unpack(fields))
redis.call('EXPIRE', K.record, ttl)
if idem then redis.call('SET', idem, rec.id, 'EX', ttl) end
if msgidKey then redis.call('SET', msgidKey, rec.id, 'EX', ttl) end
redis.call('HINCRBY', K.stats, 'total', 1)
enter(rec, false, rec.status, rec.updatedAt, ttl, { ARGV[2], ARGV[3], ARGV[4] }, true)
return { 1 }`
  },
  wechatPushUpdateRecord: {
    // KEYS: the shared 7, then [msgid]. ARGV: ttl s, now ISO, now ms, now padded, cutoff ms, has msgid, patch JSON.
    lua: `${PRELUDE}
local flat = redis.call('HGETALL', K.record)
if #flat == 0 then return false end
local rec = toTable(flat)
local patch = cjson.decode(ARGV[7])
local old = rec.status
local new = patch.status or old
if new ~= old and not (ALLOWED[old] and ALLOWED[old][new]) then return flat end
local ttl = tonumber(ARGV[1])
rec.status = new
rec.updatedAt = ARGV[2]
local set = { 'status', new, 'updatedAt', ARGV[2] }
for _, f in ipairs({ 'attempts', 'errcode', 'errmsg', 'msgid' }) do
  local v = patch[f]
  if v == cjson.null then
    rec[f] = nil
    redis.call('HDEL', K.record, f)
  elseif v ~= nil then
    rec[f] = tostring(v)
    set[#set + 1] = f
    set[#set + 1] = rec[f]
  end
end
redis.call('HSET', K.record, unpack(set))
redis.call('EXPIRE', K.record, ttl)
if ARGV[6] == '1' then redis.call('SET', KEYS[8], rec.id, 'EX', ttl) end
enter(rec, old, new, ARGV[2], ttl, { ARGV[3], ARGV[4], ARGV[5] }, type(patch.errcode) == 'number')
return redis.call('HGETALL', K.record)`
  },
  wechatPushDiscardRecord: {
    // KEYS: record hash, stats hash, byTemplate hash, [idempotency]. ARGV: id. Only a 'pending' record.
    lua: `
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return 0 end
local rec = {}
for i = 1, #flat, 2 do rec[flat[i]] = flat[i + 1] end
if rec.status ~= 'pending' then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HINCRBY', KEYS[2], 'total', -1)
redis.call('HINCRBY', KEYS[2], 'pending', -1)
redis.call('HINCRBY', KEYS[3], rec.templateId .. '${SEP}' .. 'pending', -1)
if KEYS[4] and redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 1`
  },
  wechatPushUseCredit: {
    numberOfKeys: 1,
    // KEYS: the openid's credit hash. ARGV: templateId, enforce ('1'/'0'). Answers { ok, remaining }.
    lua: `
local count = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if count > 0 then return { 1, redis.call('HINCRBY', KEYS[1], ARGV[1], -1) } end
if ARGV[2] == '1' then return { 0, 0 } end
return { 1, 0 }`
  }
} as const
