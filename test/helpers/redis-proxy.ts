/** TCP proxies in front of a test's Redis, for faults between a command and its reply. */
import { createServer, connect } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'

type Teardown = { teardown (fn: () => unknown): void }

/**
 * A proxy whose connections pass each client's bytes to Redis (unless `request` says no) and hand
 * Redis's replies to `reply`, which writes them to the client (or not). `refuseFor(ms)` stops
 * listening for that long: new connections are refused (ECONNREFUSED, as from a Redis that is down),
 * the open ones stay. Ends with the test.
 */
interface ProxyConnection {
  request?: (chunk: Buffer, client: Socket, upstream: Socket) => boolean
  reply: (chunk: Buffer, client: Socket, upstream: Socket) => void
}

async function proxy (t: Teardown, redisUrl: string, connection: () => ProxyConnection): Promise<{ url: string, refuseFor: (ms: number) => void }> {
  const target = new URL(redisUrl)
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const handlers = connection()
    const upstream = connect(Number(target.port), target.hostname)
    sockets.add(client).add(upstream)
    client.on('data', (chunk) => { if (handlers.request?.(chunk, client, upstream) !== false) upstream.write(chunk) })
    upstream.on('data', (chunk) => handlers.reply(chunk, client, upstream))
    const end = (): void => { client.destroy(); upstream.destroy() }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  let ended = false
  let relisten: NodeJS.Timeout | undefined
  t.teardown(() => {
    ended = true
    clearTimeout(relisten)
    for (const socket of sockets) socket.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const refuseFor = (ms: number): void => {
    if (ms <= 0) return
    // (several cuts at once: one refusal, the latest end)
    if (relisten === undefined) server.close()
    clearTimeout(relisten)
    relisten = setTimeout(() => {
      relisten = undefined
      if (!ended) server.listen(port, '127.0.0.1')
    }, ms)
  }
  return { url: `redis://127.0.0.1:${port}`, refuseFor }
}

/**
 * A proxy whose answers can be held back (`delayMs`): commands reach Redis at once, their replies
 * reach the app later, so another client can act between a command and the next one the app sends
 * once it has the reply.
 */
export async function slowRepliesProxy (t: Teardown, redisUrl: string): Promise<{ url: string, delayMs: number }> {
  const state = { url: '', delayMs: 0 }
  state.url = (await proxy(t, redisUrl, () => ({
    reply: (chunk, client) => {
      const delay = state.delayMs
      if (delay === 0) client.write(chunk)
      else setTimeout(() => { if (!client.destroyed) client.write(chunk) }, delay)
    }
  }))).url
  return state
}

/**
 * A proxy that can break one connection in the middle of a pipeline. Once armed, the next client
 * write carrying every one of `markers` is caught:
 * - `cutAfterFirstReply`: it goes to Redis, Redis's replies are read until it has answered `replies`
 *   commands (so it has run them all), only the first reply is passed on, and the connection is cut,
 *   as when Redis is killed between running a pipeline and answering it;
 * - `dropAndCut`: it never reaches Redis, and the connection is cut, as when Redis died before it
 *   (after `holdMs`: a Redis that stalled, then died).
 * New connections are then refused for `downMs` (ECONNREFUSED; 0: the client's reconnect goes
 * through at once); the other connections stay up.
 */
export interface CuttingProxy {
  url: string
  /** Resolves once a connection was cut that way. */
  cutAfterFirstReply (markers: string[], replies: number, downMs?: number): Promise<void>
  dropAndCut (markers: string[], downMs?: number, holdMs?: number): Promise<void>
  /**
   * For `windowMs`: a connection's `nth` write carrying `marker` is dropped and the connection cut
   * (`downMs` as above), on every connection that gets that far meanwhile.
   */
  cutAtNth (marker: string, nth: number, windowMs: number, downMs: number): void
}

export async function cuttingProxy (t: Teardown, redisUrl: string): Promise<CuttingProxy> {
  let armed: { markers: string[], replies: number, forward: boolean, downMs: number, holdMs: number, done: () => void } | undefined
  const cut = (client: Socket, upstream: Socket, downMs: number): void => {
    refuseFor(downMs)
    client.destroy()
    upstream.destroy()
  }
  let nthCut: { marker: string, nth: number, until: number, downMs: number } | undefined
  const { url, refuseFor } = await proxy(t, redisUrl, () => {
    let cutting: { replies: number, downMs: number, done: () => void, buffered: Buffer } | undefined
    let seen = 0
    return {
      request: (chunk, client, upstream) => {
        if (nthCut !== undefined && Date.now() < nthCut.until && chunk.includes(nthCut.marker) && ++seen === nthCut.nth) {
          cut(client, upstream, nthCut.downMs)
          return false
        }
        if (armed === undefined || !armed.markers.every((marker) => chunk.includes(marker))) return true
        const { replies, forward, downMs, holdMs, done } = armed
        armed = undefined
        if (!forward) {
          setTimeout(() => { cut(client, upstream, downMs); done() }, holdMs)
          return false
        }
        cutting = { replies, downMs, done, buffered: Buffer.alloc(0) }
        return true
      },
      reply: (chunk, client, upstream) => {
        if (cutting === undefined) {
          client.write(chunk)
          return
        }
        cutting.buffered = Buffer.concat([cutting.buffered, chunk])
        const ends = replyEnds(cutting.buffered)
        if (ends.length < cutting.replies) return
        const { downMs, done } = cutting
        client.write(cutting.buffered.subarray(0, ends[0]), () => cut(client, upstream, downMs))
        done()
        cutting = undefined
      }
    }
  })
  return {
    url,
    cutAfterFirstReply: (markers, replies, downMs = 0) => new Promise<void>((resolve) => { armed = { markers, replies, forward: true, downMs, holdMs: 0, done: resolve } }),
    dropAndCut: (markers, downMs = 0, holdMs = 0) => new Promise<void>((resolve) => { armed = { markers, replies: 0, forward: false, downMs, holdMs, done: resolve } }),
    cutAtNth: (marker, nth, windowMs, downMs) => { nthCut = { marker, nth, until: Date.now() + windowMs, downMs } }
  }
}

/** Where each complete RESP2 reply in `buffer` ends (simple, error, integer, bulk and array replies). */
function replyEnds (buffer: Buffer): number[] {
  const ends: number[] = []
  let at = 0
  for (;;) {
    const end = replyEnd(buffer, at)
    if (end === undefined) return ends
    ends.push(end)
    at = end
  }
}

function replyEnd (buffer: Buffer, at: number): number | undefined {
  const lineEnd = buffer.indexOf('\r\n', at)
  if (lineEnd === -1) return undefined
  const type = String.fromCharCode(buffer[at] as number)
  const length = Number(buffer.subarray(at + 1, lineEnd).toString())
  if (type === '$') {
    if (length < 0) return lineEnd + 2
    const end = lineEnd + 2 + length + 2
    return end <= buffer.length ? end : undefined
  }
  if (type === '*') {
    let next: number | undefined = lineEnd + 2
    for (let i = 0; i < length && next !== undefined; i++) next = replyEnd(buffer, next)
    return next
  }
  return lineEnd + 2
}
