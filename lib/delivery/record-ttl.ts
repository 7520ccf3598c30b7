/**
 * How long a message record is kept (seconds). A finished message's record keeps `retention`. A
 * message still on its way (pending, sending) must keep its record until it runs, or status(id)
 * would answer null for a queued message and the job runner would write the record anew (stats then
 * count it twice, once stuck in 'pending'). So its record covers the wait ahead that is known (a
 * delay, a backoff, 45011's minute, 45009's pause) plus at least IN_FLIGHT_FLOOR_SECONDS for the
 * wait that is not (a backlog behind a limiter); the write that finishes it brings `retention` back.
 */
export const IN_FLIGHT_FLOOR_SECONDS = 7 * 86_400

export function inFlightTtl (retentionSeconds: number, waitMs = 0): number {
  return Math.max(retentionSeconds, IN_FLIGHT_FLOOR_SECONDS) + Math.ceil(Math.max(0, waitMs) / 1000)
}
