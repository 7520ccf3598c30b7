/**
 * The benches measure the package as its users run it: the JavaScript tsc compiles into dist/ (what
 * `main` and `exports` point at), not lib/ compiled on the fly by tsx. tsx's transform keeps function
 * names with a helper call on every closure it creates, which on the send path alone cost ~10 µs of
 * CPU per send (a profile of bench/prof-send.ts, 2026-11-28): a cost no user pays.
 *
 * Types still come from lib/ (the same declarations dist/ ships). The build must be current: a dist/
 * older than lib/ would measure old code, so that is an error, not a warning.
 */
import { readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import type PluginType from '../lib/index.js'
import type * as Testing from '../lib/testing/index.js'
import type { BullQueue as BullQueueType } from '../lib/delivery/bullmq-queue.js'

const ROOT = path.join(__dirname, '..')

function newestMtime (dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs)
  }
  return newest
}

function assertBuilt (): void {
  let built: number
  try {
    built = statSync(path.join(ROOT, 'dist', 'index.js')).mtimeMs
  } catch {
    throw new Error('bench: dist/ is missing: run `npm run build` first (the benches measure the built package)')
  }
  if (newestMtime(path.join(ROOT, 'lib')) > built) {
    throw new Error('bench: dist/ is older than lib/: run `npm run build` first (the benches measure the built package)')
  }
}

assertBuilt()

function requireBuilt<T> (file: string): T {
  return require(path.join(ROOT, 'dist', file)) as T
}

export const wechatPush = requireBuilt<{ default: typeof PluginType }>('index.js').default
export const testing = requireBuilt<typeof Testing>('testing/index.js')
/** The class the built plugin uses (hook-app.ts patches it for its web-only instances). */
export const BullQueue = requireBuilt<{ BullQueue: typeof BullQueueType }>('delivery/bullmq-queue.js').BullQueue
