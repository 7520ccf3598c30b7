import type { Redis } from 'ioredis'
import { CREDIT_SCRIPTS } from './credits-scripts.js'
import { RECORD_SCRIPTS } from './records-scripts.js'

/**
 * The Redis store's multi-step updates, each one Lua script touching one key (so one Cluster slot).
 * Defined once per client with `defineCommand` under names that cannot clash with the app's.
 */
export const SCRIPTS = {
  wechatPushPutToken: {
    numberOfKeys: 1,
    // ARGV: record JSON, its expiresAt, ttl ms. Keeps whichever token lasts longer.
    lua: `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if ok and type(rec) == 'table' and tonumber(rec.expiresAt) and tonumber(rec.expiresAt) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`
  },
  wechatPushDropToken: {
    numberOfKeys: 1,
    // ARGV: the rejected token. Deletes only if it is still the stored one.
    lua: `
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, rec = pcall(cjson.decode, cur)
if ok and type(rec) == 'table' and rec.token == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0`
  },
  wechatPushReleaseLock: {
    numberOfKeys: 1,
    // ARGV: owner id. Compare-and-delete so a slow holder never frees a lock somebody else took over.
    lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`
  },
  wechatPushClaim: {
    // KEYS: the push's dedupe key, its owner key. ARGV: claim ttl ms, owner. 'claimed' for the first
    // sighting, else the state another attempt left: 'pending' (being applied) or 'done' (applied;
    // also '1', written by earlier versions). A claim that expired between the two calls is 'pending'.
    // The dedupe key holds 'pending' as earlier versions wrote it (an instance of one still reads it
    // during a rolling deploy); the owner sits beside it, so only its owner drops the claim.
    numberOfKeys: 2,
    lua: `
if redis.call('SET', KEYS[1], 'pending', 'PX', ARGV[1], 'NX') then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
  return 'claimed'
end
local state = redis.call('GET', KEYS[1])
if not state or string.sub(state, 1, 7) == 'pending' then return 'pending' end
return 'done'`
  },
  wechatPushDropClaim: {
    numberOfKeys: 2,
    // KEYS: the push's dedupe key, its owner key. ARGV: owner. Drops the claim only while this owner
    // holds it: one that expired and another attempt took stays.
    lua: `
if redis.call('GET', KEYS[1]) == 'pending' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0`
  },
  wechatPushTakeForce: {
    numberOfKeys: 1,
    // ARGV: China day, now ms, per-day limit, spacing ms.
    lua: `
local day = redis.call('HGET', KEYS[1], 'day')
local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
if day ~= ARGV[1] then count = 0 end
if count >= tonumber(ARGV[3]) then return 'daily' end
if tonumber(ARGV[2]) - last < tonumber(ARGV[4]) then return 'spacing' end
redis.call('HSET', KEYS[1], 'day', ARGV[1], 'count', count + 1, 'last', ARGV[2])
redis.call('PEXPIRE', KEYS[1], 172800000)
return 'ok'`
  }
} as const

/** Every script the Redis store defines on its client (token part and records part). */
export const ALL_SCRIPTS: Record<string, { lua: string, numberOfKeys?: number }> & typeof SCRIPTS & typeof RECORD_SCRIPTS & typeof CREDIT_SCRIPTS = { ...SCRIPTS, ...RECORD_SCRIPTS, ...CREDIT_SCRIPTS }

export type ScriptName = keyof typeof SCRIPTS | keyof typeof RECORD_SCRIPTS | keyof typeof CREDIT_SCRIPTS

/**
 * The client with our scripts defined (`defineCommand`); dynamic-key scripts take the key count first.
 * Arrays among the arguments are flattened by ioredis (Command: `args.flat()`).
 */
export type ScriptClient = Redis & Record<ScriptName, (...args: (string | number | readonly string[])[]) => Promise<unknown>>
