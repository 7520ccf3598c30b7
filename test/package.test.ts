import { test } from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import path from 'node:path'

const root = path.join(__dirname, '..')
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>, devDependencies: Record<string, string>, scripts: Record<string, string>
}

function jsFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    return entry.isDirectory() ? jsFiles(full) : entry.name.endsWith('.js') ? [full] : []
  })
}

function packageName (specifier: string): string {
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]
}

// fastify-org convention (@fastify/rate-limit, @fastify/redis): the app brings fastify; a copy in our
// dependencies would be a second fastify whose types do not match the app's (app.register: TS2769).
test('fastify and @fastify/redis are the app\'s to install, not dependencies', async (t) => {
  t.notOk('fastify' in pkg.dependencies, 'fastify is not a dependency (fastify-plugin checks the app\'s is 5.x)')
  t.ok('fastify' in pkg.devDependencies)
  t.notOk('@fastify/redis' in pkg.dependencies, '@fastify/redis is optional: the plugin uses fastify.redis when the app registered it')
  t.ok('@fastify/redis' in pkg.devDependencies)
})

test('every package the built code requires is a dependency (fastify only in the testing subpath)', async (t) => {
  const dist = path.join(root, 'dist')
  if (!existsSync(dist)) {
    t.fail('dist/ is missing: run `npm run build` first (npm test does)')
    return
  }
  const builtins = new Set(builtinModules)
  for (const file of jsFiles(dist)) {
    const relative = path.relative(dist, file)
    for (const match of readFileSync(file, 'utf8').matchAll(/require\("([^".][^"]*)"\)/g)) {
      const name = packageName(match[1])
      if (name.startsWith('node:') || builtins.has(name)) continue
      if (name === 'fastify') {
        t.ok(relative.startsWith(`testing${path.sep}`), `${relative} requires fastify: only the simulator may (an app using it has fastify)`)
        continue
      }
      t.ok(name in pkg.dependencies, `${relative} requires ${name}, which is in dependencies`)
    }
  }
})

test('the tarball is built and its source maps carry the sources', async (t) => {
  // npm pack / npm publish run prepack: a clean checkout has no dist/ to ship otherwise
  t.match(pkg.scripts.prepack, /npm run build/)
  const map = path.join(root, 'dist', 'index.js.map')
  if (!existsSync(map)) {
    t.fail('dist/ is missing: run `npm run build` first (npm test does)')
    return
  }
  // the maps point at ../lib/*.ts, which is not shipped: the sources travel inside them
  const { sources, sourcesContent } = JSON.parse(readFileSync(map, 'utf8')) as { sources: string[], sourcesContent?: string[] }
  t.equal(sourcesContent?.length, sources.length)
  t.match(sourcesContent?.[0], /async function fastifyWechatPush/)
})

// TypeScript's pre-exports resolution (`module: commonjs` without `moduleResolution`, the default before
// TypeScript 6) does not read "exports": `fastify-wechat-push/testing` had no types there (TS2307).
// typesVersions maps the subpath to the same declarations, for every subpath "exports" declares.
test('every exported subpath\'s types are found without "exports" too (typesVersions)', async (t) => {
  const manifest = pkg as unknown as { exports: Record<string, { types?: string } | string>, typesVersions?: Record<string, Record<string, string[]>> }
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    if (subpath === '.' || typeof target === 'string' || target.types === undefined) continue
    t.same(manifest.typesVersions?.['*']?.[subpath.replace(/^\.\//, '')], [target.types], `${subpath} → ${target.types}`)
  }
})
