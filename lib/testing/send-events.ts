import type { FastifyInstance } from 'fastify'
import type { SimContext } from './context.js'
import type { SimPusher } from './push.js'
import { bodyText, parseObject } from './request.js'
import type { SimAcceptedMessage } from './types.js'

const SEND_URL = '/cgi-bin/message/subscribe/send'

/**
 * Pushes a sent event for each send the simulator accepted, once its answer went out (§7.3: the
 * result arrives asynchronously after `subscribe/send`), or once its connection was dropped by a
 * `processed` fault: WeChat pushes the result of a message it accepted whether or not its answer
 * reached the caller. An accepted message is matched to its request by position (the accepted log's
 * length before the handler) and by touser + template_id; each message is claimed once, so every
 * accepted send gets exactly one sent event.
 */
export function watchSends (app: FastifyInstance, ctx: SimContext, pusher: SimPusher): void {
  const claimed = new WeakSet<SimAcceptedMessage>()
  app.addHook('preHandler', async (request, reply) => {
    if (request.routeOptions.url !== SEND_URL) return
    const from = ctx.accepted.length
    // 'close' fires after the answer was written and also when the socket was destroyed (a drop),
    // where Fastify's onResponse does not run.
    reply.raw.once('close', () => {
      const sent = parseObject(bodyText(request) ?? '')
      const message = ctx.accepted.slice(from).find((m) => !claimed.has(m) && m.touser === sent?.touser && m.template_id === sent?.template_id)
      if (message === undefined) return
      claimed.add(message)
      pusher.sent(message)
    })
  })
}
