import { test } from 'tap'
import { fork } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { withoutCoverage } from './helpers/child-env.js'
import { exitCode } from './helpers/fork.js'

const COVERAGE_DIR = path.join(__dirname, '..', '.tap', 'coverage')
const PROBE = path.join(__dirname, 'fixtures', 'coverage-probe.ts')
const TSX_LOADER = pathToFileURL(require.resolve('tsx')).href

/** Coverage files that name the probe: only the probe's own processes load it. */
function probeCoverageFiles (): string[] {
  if (!existsSync(COVERAGE_DIR)) return []
  return readdirSync(COVERAGE_DIR).filter((name) => {
    try {
      return readFileSync(path.join(COVERAGE_DIR, name), 'utf8').includes('coverage-probe.ts')
    } catch {
      return false // being written by another test's process right now: not the probe's
    }
  })
}

async function runProbe (env: NodeJS.ProcessEnv): Promise<{ code: number | null | 'timeout', newFiles: string[] }> {
  const before = new Set(probeCoverageFiles())
  const child = fork(PROBE, [], { execArgv: ['--import', TSX_LOADER], env, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  const code = await exitCode(child, 60_000)
  return { code, newFiles: probeCoverageFiles().filter((name) => !before.has(name)) }
}

// The fleet test's instances run lib/ through tsx: their coverage, merged with the tests', scrambled
// tap's report now and then (helpers/child-env.ts). Stripping NODE_V8_COVERAGE, as they once did, kept
// nothing out: tap's recorder is loaded through NODE_OPTIONS and has its own switch.
test('a child started with withoutCoverage() writes no coverage for tap\'s report', async (t) => {
  const recording = process.env._TAPJS_PROCESSINFO_COVERAGE_ === '1'
  const plain = await runProbe(process.env)
  t.equal(plain.code, 0)
  if (recording) t.equal(plain.newFiles.length, 1, 'control: with the inherited env the child does write coverage')
  else t.comment('tap is not recording coverage in this run: the control cannot show the probe would be seen')

  const kept = await runProbe(withoutCoverage())
  t.equal(kept.code, 0)
  t.same(kept.newFiles, [], 'no coverage file from the child')

  const { NODE_V8_COVERAGE: _v8, ...oldWay } = process.env
  const old = await runProbe(oldWay)
  if (recording) t.equal(old.newFiles.length, 1, 'stripping NODE_V8_COVERAGE alone (the old way) does not keep it out')
})
