/**
 * The credits' Lua (credits-redis.ts): each multi-step change of a user's per-template credit count is
 * one script, every key it touches passed in KEYS (under the `{appId}` hash tag: one Cluster slot).
 */
export const CREDIT_SCRIPTS = {
  wechatPushRefundMarked: {
    numberOfKeys: 2,
    // KEYS: the openid's credit hash, the message's "credit taken" mark. ARGV: templateId.
    lua: `
if redis.call('DEL', KEYS[2]) == 1 then redis.call('HINCRBY', KEYS[1], ARGV[1], 1); return 1 end
return 0`
  },
  wechatPushAddCredits: {
    // KEYS: the openid's credit hash, its event times hash (a:/r: + templateId), [the push's "accepts
    // added" mark]. ARGV: the accepts' time ms ('' unknown), the mark's ttl ms, then templateId, n
    // pairs. With the mark, adds only if it was not there (a late write and a retry add once). With a
    // time, an accept older than the latest reject applied adds nothing (wechatPushRejectCredit).
    lua: `
if KEYS[3] and not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then return 0 end
local at = tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  local tpl = ARGV[i]
  local void = false
  if at then
    void = at < (tonumber(redis.call('HGET', KEYS[2], 'r:' .. tpl) or '0') or 0)
    if not void and at > (tonumber(redis.call('HGET', KEYS[2], 'a:' .. tpl) or '0') or 0) then
      redis.call('HSET', KEYS[2], 'a:' .. tpl, ARGV[1])
    end
  end
  if not void then redis.call('HINCRBY', KEYS[1], tpl, ARGV[i + 1]) end
end
return 1`
  },
  wechatPushRejectCredit: {
    numberOfKeys: 2,
    // KEYS: the openid's credit hash, its event times hash. ARGV: templateId, the reject's time ms.
    // A reject older than the latest accept applied came late (WeChat retried its push): 0, no change.
    lua: `
local at = tonumber(ARGV[2])
if at < (tonumber(redis.call('HGET', KEYS[2], 'a:' .. ARGV[1]) or '0') or 0) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 0)
if at > (tonumber(redis.call('HGET', KEYS[2], 'r:' .. ARGV[1]) or '0') or 0) then
  redis.call('HSET', KEYS[2], 'r:' .. ARGV[1], ARGV[2])
end
return 1`
  },
  wechatPushUseCredit: {
    // KEYS: the openid's credit hash, [the message's "credit taken" mark]. ARGV: templateId, enforce
    // ('1'/'0'), the mark's ttl ms. Answers { ok, remaining }. The mark says a credit was taken, so
    // the undo of a use whose answer never came gives one back only if it was (wechatPushRefundMarked).
    lua: `
local count = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if count > 0 then
  if KEYS[2] then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
  return { 1, redis.call('HINCRBY', KEYS[1], ARGV[1], -1) }
end
if ARGV[2] == '1' then return { 0, 0 } end
return { 1, 0 }`
  }
} as const
