import { test } from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { withoutCoverage } from './helpers/child-env.js'

const root = path.join(__dirname, '..')

// README's named imports, from a real .mjs file run by node on the built package (dist/): tap's own
// loader would not show what Node's ESM loader does with the CommonJS build. The child records no
// coverage (withoutCoverage): dist/ maps back to lib/ through tsc's source maps, whose line maps differ
// from tap's, and c8 keeps one process's map per file (child-env.ts).
test('native ESM: every documented named export works (package, testing subpath, CLI-generated file)', async (t) => {
  if (!existsSync(path.join(root, 'dist', 'index.js'))) {
    t.fail('dist/ is missing: run `npm run build` first (npm test does)')
    return
  }
  const { code, output } = await new Promise<{ code: number, output: string }>((resolve) => {
    execFile(process.execPath, [path.join(__dirname, 'fixtures', 'esm', 'named-exports.mjs')], { cwd: root, timeout: 30_000, env: withoutCoverage() }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, output: stdout + stderr })
    })
  })
  t.equal(code, 0, output)
  t.match(output, /esm named exports: ok/)
})
