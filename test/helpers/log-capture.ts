import { Writable } from 'node:stream'

/** Collects every log line an app writes, as text and parsed, for assertions on what was logged. */
export function captureLogs (level = 'trace'): { logger: { level: string, stream: Writable }, lines: string[], parsed: () => Record<string, unknown>[] } {
  const lines: string[] = []
  const stream = new Writable({
    write (chunk, _encoding, callback) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      callback()
    }
  })
  return { logger: { level, stream }, lines, parsed: () => lines.map((line) => JSON.parse(line)) }
}
