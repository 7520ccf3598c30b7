/**
 * The WeChat simulator in its own process, so the benchmarked process runs only the client side.
 * Speaks over IPC: sends `{ type: 'ready', url, appId, appSecret }`, then answers
 * `{ type: 'stats' }` and `{ type: 'latency', ms }`, and closes on `{ type: 'close' }` or when the
 * parent goes away.
 */
import { testing } from './built.js'

const { createSimulator } = testing

interface Command { type: 'stats' | 'latency' | 'close', ms?: number }

async function main (): Promise<void> {
  const sim = await createSimulator()
  let accepted = 0
  // The simulator logs every request and accepted message; a benchmark makes hundreds of thousands,
  // so keep a running count and drop the logs every second to keep this process steady.
  const trim = setInterval(() => {
    accepted += sim.accepted.length
    sim.accepted.length = 0
    sim.requests.length = 0
  }, 1000)
  trim.unref()

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      clearInterval(trim)
      await sim.close()
      if (process.connected) process.disconnect()
    })()
    return closing
  }

  process.on('message', (command: Command) => {
    if (command.type === 'stats') {
      process.send?.({ type: 'stats', counters: { ...sim.counters }, tokenFetches: sim.tokenFetches(), accepted: accepted + sim.accepted.length })
    } else if (command.type === 'latency') {
      sim.setLatency(command.ms ?? 0)
      process.send?.({ type: 'latency' })
    } else if (command.type === 'close') {
      close().catch((err) => { console.error(err); process.exitCode = 1 })
    }
  })
  process.once('disconnect', () => { close().catch(() => {}) })
  process.send?.({ type: 'ready', url: sim.url, appId: sim.appId, appSecret: sim.appSecret })
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
  if (process.connected) process.disconnect()
})
