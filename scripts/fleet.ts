/**
 * `npm run fleet`: the fleet test at full size (issue "Proof under load and faults", part 1).
 * 4 app instances in separate processes, one persistent redis-server, the WeChat simulator;
 * 20,000 messages across send / enqueue / handler pushes; 10% transient faults on subscribe/send,
 * one token invalidation, a 10 s Redis outage, one instance SIGKILLed and restarted.
 * Prints the table on stdout (progress on stderr); exits 1 when a target is missed.
 *
 * Env: FLEET_MESSAGES (20000), FLEET_INSTANCES (4), FLEET_LOAD_SECONDS (40), FLEET_OUTAGE_SECONDS (10),
 * FLEET_FAULT_RATE (0.1), FLEET_TOKEN_ENDPOINT (stable | classic).
 */
import { formatFleetReport, fleetVerdict, runFleet } from '../test/fixtures/fleet-harness.js'

function env (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number >= 0 (got '${raw}')`)
  return value
}

async function main (): Promise<void> {
  const report = await runFleet({
    messages: env('FLEET_MESSAGES', 20_000),
    instances: env('FLEET_INSTANCES', 4),
    loadSeconds: env('FLEET_LOAD_SECONDS', 40),
    outageSeconds: env('FLEET_OUTAGE_SECONDS', 10),
    faultRate: env('FLEET_FAULT_RATE', 0.1),
    tokenEndpoint: process.env.FLEET_TOKEN_ENDPOINT === 'classic' ? 'classic' : 'stable',
    log: (line) => process.stderr.write(`[fleet] ${line}\n`)
  })
  const verdict = fleetVerdict(report)
  process.stdout.write(`\n${formatFleetReport(report)}\n\n${verdict.ok ? 'every target met' : `targets missed: ${verdict.misses.join('; ')}`}\n`)
  if (process.env.FLEET_DEBUG) process.stderr.write(`${JSON.stringify(report.logs, null, 1)}\n`)
  if (!verdict.ok) process.exitCode = 1
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 2
})
