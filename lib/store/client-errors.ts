import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'

/**
 * Connection errors of the app's Redis client, through the app's logger: once when an outage begins
 * (warn) and once when the client is ready again (info). @fastify/redis leaves its client without an
 * 'error' listener once connected, so ioredis printed "[ioredis] Unhandled error event" to stderr on
 * every reconnection attempt of an outage, outside the app's logger, while the plugin works on
 * through it (process memory for the token, retries for the queue). The listener is the plugin's own
 * and is removed on close; the app's listeners, if any, still get every event.
 */
export function watchClientErrors (fastify: FastifyInstance, client: Redis, log: FastifyBaseLogger): void {
  let down = false
  const onError = (err: Error & { code?: string }): void => {
    if (down) return
    down = true
    log.warn({ reason: err.message, code: err.code }, 'wechat: the Redis client lost its connection; working from process memory and retrying until it is back')
  }
  const onReady = (): void => {
    if (!down) return
    down = false
    log.info('wechat: the Redis client is connected again')
  }
  client.on('error', onError)
  client.on('ready', onReady)
  fastify.addHook('onClose', async () => {
    client.off('error', onError)
    client.off('ready', onReady)
  })
}
