/**
 * `npm run bench`: the send benchmark (throughput and latency vs raw undici) then the token counts,
 * both tables printed together at the end. Exit code 0 even when a target is missed: these are
 * measurements to read, not tests (the word MISSED marks a missed target).
 */
import { runSendBench } from './send.js'
import { runTokenBench } from './token.js'

async function main (): Promise<void> {
  const send = await runSendBench()
  const token = await runTokenBench()
  process.stdout.write(`\n${send.table}\n${token.table}`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
