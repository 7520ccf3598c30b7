/**
 * When a used-up daily quota (45009) may have reset. WECHAT.md §8.1 leaves the clock open: presumably
 * the China calendar day (midnight UTC+8), but no documentation says so. Both readings are covered:
 * the wait ends at the next midnight China time or the next midnight UTC, whichever comes first. If
 * WeChat still answers 45009 at midnight UTC (the China reading), the next wait is until midnight
 * China time, 16 hours on: one refused call a day at most, against half a day of messages held back
 * for nothing if the quota resets on UTC days.
 */
const CHINA_OFFSET_MS = 8 * 3_600_000
const DAY_MS = 86_400_000

export function msUntilChinaMidnight (now: number): number {
  const local = now + CHINA_OFFSET_MS
  return DAY_MS - (local % DAY_MS)
}

function msUntilUtcMidnight (now: number): number {
  return DAY_MS - (now % DAY_MS)
}

/** ms until the daily quota may have reset (above): the queue's pause after a 45009, and its retryAfter. */
export function msUntilQuotaReset (now: number): number {
  return Math.min(msUntilChinaMidnight(now), msUntilUtcMidnight(now))
}
