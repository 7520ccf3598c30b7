import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'

/**
 * Connection errors of the app's Redis client, through the app's logger: once when an outage begins
 * (warn) and once when the client is ready again (info). @fastify/redis leaves its client without an
 * 'error' listener once connected, so ioredis printed "[ioredis] Unhandled error event" to stderr on
 * every reconnection attempt of an outage, outside the app's logger, while the plugin works on
 * through it (process memory for the token, retries for the queue). The app's own listeners, if any,
 * still get every event.
 */
export function watchClientErrors (fastify: FastifyInstance, client: Redis, log: FastifyBaseLogger): void {
  let watch = WATCHES.get(client)
  if (watch === undefined) {
    watch = new ClientWatch(client, log)
    WATCHES.set(client, watch)
  }
  const joined = watch
  joined.join()
  fastify.addHook('onClose', async () => { joined.leave() })
}

/**
 * One listener pair per client, shared by every registration on it (namespaces: a pair each would
 * pass Node's limit of 10 listeners with many mini programs, and log each outage once per
 * registration), logged with the first registration's logger, removed when the last one closes.
 */
class ClientWatch {
  private registrations = 0
  private down = false

  constructor (private readonly client: Redis, private readonly log: FastifyBaseLogger) {
    client.on('error', this.onError)
    client.on('ready', this.onReady)
  }

  join (): void {
    this.registrations++
  }

  leave (): void {
    if (--this.registrations > 0) return
    this.client.off('error', this.onError)
    this.client.off('ready', this.onReady)
    WATCHES.delete(this.client)
  }

  private readonly onError = (err: Error & { code?: string }): void => {
    if (this.down) return
    this.down = true
    this.log.warn({ reason: err.message, code: err.code }, 'wechat: the Redis client lost its connection; working from process memory and retrying until it is back')
  }

  private readonly onReady = (): void => {
    if (!this.down) return
    this.down = false
    this.log.info('wechat: the Redis client is connected again')
  }
}

const WATCHES = new WeakMap<object, ClientWatch>()
