// Every ```ts block of README.md must typecheck as an app would compile it: `tsc --strict`, native
// ESM (module nodenext), against the built package (dist/, `npm run build` first) imported by its
// name. Run by `npm run test:types` (so by `npm test`). Each block is its own module; the names a
// snippet uses without defining (its surroundings in a real app) are declared once in PRELUDE.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)

const PRELUDE = `
type App = import('fastify').FastifyInstance
interface Order { id: string, no: string, openid: string, title: string, total: string, shippedAt: string }
declare const app: App
declare const appId: string
declare const appSecret: string
declare const toUser: string
declare const SHIPPED: string
declare const PAID: string
declare const SHIPPED_TEMPLATE_ID: string
declare function shipOrder (id: string): Promise<Order>
declare function payOrder (): Promise<Order>
declare function buildApp (options: { wechat: import('fastify-wechat-push').FastifyWechatPushOptions }): App
declare const metrics: { increment (name: string): void }
declare const orders: { markNotified (id: string, msgid: string | undefined): void }
`

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'nodenext',
    moduleResolution: 'nodenext',
    lib: ['ES2023'],
    types: ['node'],
    strict: true,
    noEmit: true,
    skipLibCheck: false
  },
  include: ['*.mts', '*.d.ts']
}

if (!existsSync(join(root, 'dist', 'index.d.ts'))) {
  console.error('check-readme: dist/ is missing: run `npm run build` first')
  process.exit(1)
}

const lines = readFileSync(join(root, 'README.md'), 'utf8').split('\n')
const blocks = []
for (let i = 0; i < lines.length; i++) {
  if (lines[i].trim() !== '```ts') continue
  const start = i + 1
  let end = start
  while (end < lines.length && lines[end].trim() !== '```') end++
  blocks.push({ line: start + 1, code: lines.slice(start, end).join('\n') })
  i = end
}

// Inside the package (not under node_modules), so 'fastify-wechat-push' resolves to this package's
// own exports (dist/), and fastify, @fastify/redis, ioredis to its node_modules.
const dir = mkdtempSync(join(root, '.readme-check-'))
try {
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2))
  writeFileSync(join(dir, 'prelude.d.ts'), PRELUDE)
  for (const block of blocks) writeFileSync(join(dir, `readme-${block.line}.mts`), `${block.code}\nexport {}\n`)
  const tsc = require.resolve('typescript/bin/tsc')
  let output = ''
  try {
    execFileSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json'), '--pretty', 'false'], { cwd: dir, encoding: 'utf8', stdio: 'pipe' })
  } catch (err) {
    output = `${err.stdout ?? ''}${err.stderr ?? ''}`
    if (output === '') throw err
  }
  if (output !== '') {
    // readme-57.mts(3,10): error ... → README.md:59:10: error ...
    const mapped = output.replace(/(?:^|\n)[^\n]*?readme-(\d+)\.mts\((\d+),(\d+)\)/g, (_m, start, line, col) => `\nREADME.md:${Number(start) + Number(line) - 1}:${col}`)
    console.error(`check-readme: README.md's TypeScript snippets do not compile under tsc --strict:\n${mapped.trim()}`)
    process.exitCode = 1
  } else {
    console.log(`check-readme: ${blocks.length} TypeScript snippets of README.md compile (tsc --strict, ESM)`)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
