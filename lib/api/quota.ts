/**
 * WeChat's daily quotas (45009) reset with the China calendar day: midnight UTC+8 (WECHAT.md §8.1
 * says this is the usual reading, not documented). Used to park the queue instead of burning attempts.
 */
const CHINA_OFFSET_MS = 8 * 3_600_000
const DAY_MS = 86_400_000

export function msUntilChinaMidnight (now: number): number {
  const local = now + CHINA_OFFSET_MS
  return DAY_MS - (local % DAY_MS)
}
