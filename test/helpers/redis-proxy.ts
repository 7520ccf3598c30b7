/** TCP proxies in front of a test's Redis, for faults between a command and its reply. */
import { createServer, connect } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'

type Teardown = { teardown (fn: () => unknown): void }

/**
 * A proxy whose connections pass each client's bytes to Redis at once and hand Redis's replies to
 * `reply`, which writes them to the client (or not). Ends with the test.
 */
async function proxy (t: Teardown, redisUrl: string, connection: () => { request?: (chunk: Buffer) => void, reply: (chunk: Buffer, client: Socket, upstream: Socket) => void }): Promise<string> {
  const target = new URL(redisUrl)
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname)
    sockets.add(client).add(upstream)
    const handlers = connection()
    client.on('data', (chunk) => { handlers.request?.(chunk); upstream.write(chunk) })
    upstream.on('data', (chunk) => handlers.reply(chunk, client, upstream))
    const end = (): void => { client.destroy(); upstream.destroy() }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return `redis://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/**
 * A proxy whose answers can be held back (`delayMs`): commands reach Redis at once, their replies
 * reach the app later, so another client can act between a command and the next one the app sends
 * once it has the reply.
 */
export async function slowRepliesProxy (t: Teardown, redisUrl: string): Promise<{ url: string, delayMs: number }> {
  const state = { url: '', delayMs: 0 }
  state.url = await proxy(t, redisUrl, () => ({
    reply: (chunk, client) => {
      const delay = state.delayMs
      if (delay === 0) client.write(chunk)
      else setTimeout(() => { if (!client.destroyed) client.write(chunk) }, delay)
    }
  }))
  return state
}

/**
 * A proxy that can break one connection in the middle of a pipeline, as a Redis killed between
 * running commands and sending their replies does: once armed, the next client write carrying every
 * one of `markers` goes to Redis, Redis's replies are read until it has answered `replies` commands
 * (so it has run them all), only the first reply is passed on, and the client's connection is cut.
 * The client's reconnect goes through as before.
 */
export interface CuttingProxy {
  url: string
  /** Resolves once a connection was cut that way. */
  cutAfterFirstReply (markers: string[], replies: number): Promise<void>
}

export async function cuttingProxy (t: Teardown, redisUrl: string): Promise<CuttingProxy> {
  let armed: { markers: string[], replies: number, done: () => void } | undefined
  const url = await proxy(t, redisUrl, () => {
    let cutting: { replies: number, done: () => void, buffered: Buffer } | undefined
    return {
      request: (chunk) => {
        if (armed === undefined || !armed.markers.every((marker) => chunk.includes(marker))) return
        cutting = { replies: armed.replies, done: armed.done, buffered: Buffer.alloc(0) }
        armed = undefined
      },
      reply: (chunk, client, upstream) => {
        if (cutting === undefined) {
          client.write(chunk)
          return
        }
        cutting.buffered = Buffer.concat([cutting.buffered, chunk])
        const ends = replyEnds(cutting.buffered)
        if (ends.length < cutting.replies) return
        client.write(cutting.buffered.subarray(0, ends[0]), () => {
          client.destroy()
          upstream.destroy()
        })
        cutting.done()
        cutting = undefined
      }
    }
  })
  return { url, cutAfterFirstReply: (markers, replies) => new Promise<void>((resolve) => { armed = { markers, replies, done: resolve } }) }
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
