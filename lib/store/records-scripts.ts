import { NO_CONSENT_ERRCODE, RECENT_FAILURES_CAP, SENT_INDEX_CAP, SEP, STATUSES, TRANSITIONS } from './records.js'

/**
 * The records' Lua: each multi-step update is one script, every key it touches is passed in KEYS
 * (all under one `{appId}` hash tag, so one Cluster slot), none is built inside Lua. The transition
 * table and caps are generated from records.ts, so both stores follow the same rules.
 *
 * Record writes (creates and updates) go through one script that applies a batch of them in order
 * (record-writes.ts gathers the writes issued together into one call). KEYS: 1 stats hash,
 * 2 byTemplate hash, 3 errcodes hash, 4 recent-failures list, 5 sent index by pair (lex), 6 sent
 * index by time; then each write's own keys, in order: its record (one JSON string) and the
 * optional keys its ARGV flags name.
 */
const ALLOWED = `{ ${STATUSES.map((from) => `${from} = { ${TRANSITIONS[from].map((to) => `${to} = true`).join(', ')} }`).join(', ')} }`

/** The shared KEYS of the write script, in this order (see above). */
export const WRITE_SHARED_KEYS = 6

const PRELUDE = `
local ALLOWED = ${ALLOWED}
local FAILURE = { failed = true, unknown = true }
local AWAITING = { sent = true, unknown = true }
local SEP = '${SEP}'
local K = { stats = KEYS[1], byTemplate = KEYS[2], errcodes = KEYS[3], recent = KEYS[4], sentPair = KEYS[5], sentTime = KEYS[6] }

-- Counter moves are summed over the batch and applied once per field at the end: exact, and the
-- whole batch is one script, so no reader sees the counters half-moved.
local function bump (sums, outer, inner, by)
  local t = sums[outer]
  if not t then t = {}; sums[outer] = t end
  t[inner] = (t[inner] or 0) + by
end
local moves = {}
local function move (key, field, by) bump(moves, key, field, by) end
-- byTemplate moves by template then status: its field names are built once per pair, not per record
local templateMoves = {}
local function moveTemplate (templateId, status, by) bump(templateMoves, templateId, status, by) end
local function applyMoves ()
  for key, t in pairs(moves) do
    for field, by in pairs(t) do redis.call('HINCRBY', key, field, by) end
  end
  for templateId, t in pairs(templateMoves) do
    for status, by in pairs(t) do redis.call('HINCRBY', K.byTemplate, templateId .. SEP .. status, by) end
  end
end

local function zremBoth (members)
  if #members > 0 then
    redis.call('ZREM', K.sentPair, unpack(members))
    redis.call('ZREM', K.sentTime, unpack(members))
  end
end

-- Whether a move to 'new' needs the whole record (failure entry, sent index) and not only its template.
local function needsRecord (new, hasMsgid)
  return FAILURE[new] or (AWAITING[new] and not hasMsgid)
end

-- Counters and indexes of a move from old (false: a new record) to new; sent = {ms, padded ms,
-- cutoff ms}. It may set or clear rec.sentAt: answers whether rec changed (to be written back).
local function enter (rec, old, new, at, ttl, sent, newErrcode)
  if old == new then return false end
  local changed = false
  if old then
    move(K.stats, old, -1)
    moveTemplate(rec.templateId, old, -1)
  end
  move(K.stats, new, 1)
  moveTemplate(rec.templateId, new, 1)
  if FAILURE[new] then
    local entry = { id = rec.id, templateId = rec.templateId, at = at, errmsg = rec.errmsg }
    if rec.errcode then
      entry.errcode = tonumber(rec.errcode)
      if newErrcode or not old or not FAILURE[old] then
        move(K.errcodes, tostring(entry.errcode), 1)
      end
      -- once the message ends failed (an 'unknown' 43101 followed an attempt that may have been
      -- delivered: not the user's refusal for sure, until it is settled failed)
      if entry.errcode == ${NO_CONSENT_ERRCODE} and new == 'failed' then move(K.stats, 'noConsent', 1) end
    end
    redis.call('LPUSH', K.recent, cjson.encode(entry))
    redis.call('LTRIM', K.recent, 0, ${RECENT_FAILURES_CAP - 1})
  end
  if old and AWAITING[old] and rec.sentAt then
    local pair = rec.toUser .. SEP .. rec.templateId .. SEP
    zremBoth({ pair .. rec.sentAt .. SEP .. rec.id })
    rec.sentAt = nil
    changed = true
  end
  -- receipts find a message by msgid when WeChat returned one; the pair index is only for the rest,
  -- 'unknown' included: the receipt of an attempt whose answer was lost settles it
  if AWAITING[new] and not rec.msgid then
    local pair = rec.toUser .. SEP .. rec.templateId .. SEP
    local member = pair .. sent[2] .. SEP .. rec.id
    rec.sentAt = sent[2]
    changed = true
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
  return changed
end
`

/**
 * Reply codes of one write in the batch script's answer, in order: the bare code when there is no
 * payload (created, missing), else `[code, payload]` (the record's JSON, or an id, or a message);
 * an update answers `[updated, the record's JSON after it, its status before it]`.
 */
export const WRITE_REPLY = { created: 1, exists: 0, staleMapping: 2, updated: 3, missing: 4, error: -1 } as const

/**
 * ARGV entries of one write in the batch script, by its first entry (the op):
 *   'c' create: ttl s, sentAt ms, sentAt padded, cutoff ms, has idempotency ('1'/'0'), has msgid,
 *       id of a stale mapping that may be replaced ('' none), record JSON, id, status, templateId
 *   'p' plain create (no idempotency key, a status that needs neither the failure list nor the sent
 *       index: most sends): ttl s, has msgid, record JSON, id, status, templateId
 *   'u' update: ttl s, sentAt ms, sentAt padded, cutoff ms, now ISO, has msgid, patch JSON (with
 *       `onlyFrom`, the statuses the record must have for the update to apply)
 * A plain create is the send path's write: half the arguments, and the script reads no JSON for it.
 */
export const WRITE_ARGS = { c: 12, p: 7, u: 8 } as const

export const RECORD_SCRIPTS = {
  wechatPushWriteRecords: {
    // KEYS: the shared 6, then per write: create → record [idempotency] [msgid]; plain create and
    // update → record [msgid]. ARGV: each write's WRITE_ARGS[op] entries, in order (above). A record is one JSON string (SET ... EX):
    // a create stores the client's JSON as it is, and decodes it only for a failure or the sent index.
    // Answers per write, in order, its code (created, missing) or { code, payload } (WRITE_REPLY). A
    // write that fails answers { -1, message } and the others still apply, as separate calls would.
    lua: `${PRELUDE}
local function create (recordKey, idem, msgidKey, a)
  local ttl = tonumber(ARGV[a + 1])
  local json, id, status, templateId = ARGV[a + 8], ARGV[a + 9], ARGV[a + 10], ARGV[a + 11]
  if idem then
    local existing = redis.call('GET', recordKey)
    if existing then return { 0, existing } end
    local prior = redis.call('GET', idem)
    if prior and prior ~= ARGV[a + 7] then return { 2, prior } end
  end
  if not redis.call('SET', recordKey, json, 'NX', 'EX', ttl) then return { 0, redis.call('GET', recordKey) } end
  if idem then redis.call('SET', idem, id, 'EX', ttl) end
  if msgidKey then redis.call('SET', msgidKey, id, 'EX', ttl) end
  move(K.stats, 'total', 1)
  if needsRecord(status, msgidKey) then
    local rec = cjson.decode(json)
    if enter(rec, false, status, rec.updatedAt, ttl, { ARGV[a + 2], ARGV[a + 3], ARGV[a + 4] }, true) then
      redis.call('SET', recordKey, cjson.encode(rec), 'KEEPTTL')
    end
  else
    move(K.stats, status, 1)
    moveTemplate(templateId, status, 1)
  end
  return 1
end

local function update (recordKey, msgidKey, a)
  local json = redis.call('GET', recordKey)
  if not json then return 4 end
  local rec = cjson.decode(json)
  local patch = cjson.decode(ARGV[a + 7])
  local old = rec.status
  local new = patch.status or old
  if new ~= old and not (ALLOWED[old] and ALLOWED[old][new]) then return { 3, json, old } end
  if type(patch.onlyFrom) == 'table' then
    local from = false
    for _, s in ipairs(patch.onlyFrom) do if s == old then from = true end end
    if not from then return { 3, json, old } end
  end
  local ttl = tonumber(ARGV[a + 1])
  local now = ARGV[a + 5]
  rec.status = new
  rec.updatedAt = now
  for _, f in ipairs({ 'attempts', 'errcode', 'errmsg', 'msgid' }) do
    local v = patch[f]
    if v == cjson.null then rec[f] = nil elseif v ~= nil then rec[f] = v end
  end
  enter(rec, old, new, now, ttl, { ARGV[a + 2], ARGV[a + 3], ARGV[a + 4] }, type(patch.errcode) == 'number')
  json = cjson.encode(rec)
  redis.call('SET', recordKey, json, 'EX', ttl)
  if msgidKey then redis.call('SET', msgidKey, rec.id, 'EX', ttl) end
  return { 3, json, old }
end

local function plain (recordKey, msgidKey, a)
  local ttl = ARGV[a + 1]
  local status, templateId = ARGV[a + 5], ARGV[a + 6]
  if not redis.call('SET', recordKey, ARGV[a + 3], 'NX', 'EX', ttl) then return { 0, redis.call('GET', recordKey) } end
  if msgidKey then redis.call('SET', msgidKey, ARGV[a + 4], 'EX', ttl) end
  move(K.stats, 'total', 1)
  move(K.stats, status, 1)
  moveTemplate(templateId, status, 1)
  return 1
end

local replies = {}
local k = ${WRITE_SHARED_KEYS + 1}
local a = 1
while a <= #ARGV do
  local ok, reply
  local recordKey = KEYS[k]
  local op = ARGV[a]
  k = k + 1
  if op == 'p' then
    local msgidKey
    if ARGV[a + 2] == '1' then msgidKey = KEYS[k]; k = k + 1 end
    ok, reply = pcall(plain, recordKey, msgidKey, a)
    a = a + ${WRITE_ARGS.p}
  elseif op == 'c' then
    local idem, msgidKey
    if ARGV[a + 5] == '1' then idem = KEYS[k]; k = k + 1 end
    if ARGV[a + 6] == '1' then msgidKey = KEYS[k]; k = k + 1 end
    ok, reply = pcall(create, recordKey, idem, msgidKey, a)
    a = a + ${WRITE_ARGS.c}
  else
    local msgidKey
    if ARGV[a + 6] == '1' then msgidKey = KEYS[k]; k = k + 1 end
    ok, reply = pcall(update, recordKey, msgidKey, a)
    a = a + ${WRITE_ARGS.u}
  end
  if not ok then reply = { -1, type(reply) == 'table' and tostring(reply.err) or tostring(reply) } end
  replies[#replies + 1] = reply
end
applyMoves()
return replies`
  },
  wechatPushDiscardRecord: {
    // KEYS: record, stats hash, byTemplate hash, [idempotency]. ARGV: id, the status it must still have
    // ('pending', or 'sending' for a direct send's claim).
    lua: `
local json = redis.call('GET', KEYS[1])
if not json then return 0 end
local ok, rec = pcall(cjson.decode, json)
if not ok or type(rec) ~= 'table' or rec.status ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HINCRBY', KEYS[2], 'total', -1)
redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
redis.call('HINCRBY', KEYS[3], rec.templateId .. '${SEP}' .. ARGV[2], -1)
if KEYS[4] and redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 1`
  }
} as const
