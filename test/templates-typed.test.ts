import { test } from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { runInNewContext } from 'node:vm'
import ts from 'typescript'
import Fastify from 'fastify'
import { buildApp, startSimulator } from './helpers/app.js'
import { withoutCoverage } from './helpers/child-env.js'
import wechatPush from '../lib/index.js'
import { defineTemplate } from '../lib/typed-templates.js'
import { main, renderTemplates } from '../lib/cli/templates.js'
import { DEMO_TEMPLATE_IDS, DEMO_TEMPLATES } from '../lib/testing/index.js'

const shipped = defineTemplate(DEMO_TEMPLATE_IDS.orderShipped, {
  character_string1: 'character_string',
  thing2: 'thing',
  amount3: 'amount',
  time4: 'time',
  phrase5: 'phrase'
})
const review = defineTemplate(DEMO_TEMPLATE_IDS.reviewResult, { thing1: 'thing', enum_string2: ['通过', '未通过', '待补充'] })
const shippedData = { character_string1: 'SO20260301-0042', thing2: '蓝色陶瓷杯', amount3: '¥58.00', time4: '2026-03-01 14:05', phrase5: '已发货' }

test('defineTemplate is exported from the package and checks its spec at run time', async (t) => {
  t.equal(wechatPush.defineTemplate, defineTemplate)
  t.same(shipped.id, DEMO_TEMPLATE_IDS.orderShipped)
  t.ok(Object.isFrozen(shipped) && Object.isFrozen(shipped.keys) && Object.isFrozen(review.keys.enum_string2))
  const define = defineTemplate as (id: unknown, keys: unknown) => unknown
  t.throws(() => define('', { thing1: 'thing' }), { name: 'TypeError', message: /template id/ })
  t.throws(() => define('T1', null), /keys must be an object/)
  t.throws(() => define('T1', {}), /at least one key/)
  t.throws(() => define('T1', { thing: 'thing' }), /thing is not a template key/)
  t.throws(() => define('T1', { thing2: 'time' }), /thing2 is of type thing by its name, not time/)
  t.throws(() => define('T1', { thing2: 'stuff' }), /must be a keyword type/)
  t.throws(() => define('T1', { thing2: ['a'] }), /thing2 is not an enum key/)
  t.throws(() => define('T1', { enum_string2: [] }), /must list its allowed values/)
  t.throws(() => define('T1', { enum_string2: ['ok', 3] }), /must list its allowed values/)
  t.ok(define('T1', { enum3: 'enum', foo4: 'thing' }), 'an enum key may leave its values to the template list; unknown types are taken as declared')
})

test('typed messages: send, enqueue and reply.wechatPush take { template, data }', async (t) => {
  const sim = await startSimulator(t)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(wechatPush, { appId: sim.appId, appSecret: sim.appSecret, baseUrl: sim.url })
  app.post('/ship', async (_request, reply) => {
    reply.wechatPush({ toUser: 'oUser-typed-000003', template: shipped, data: shippedData })
    return { ok: true }
  })
  await app.ready()
  const sent = await app.wechat.send({ toUser: 'oUser-typed-000001', template: shipped, data: shippedData })
  t.ok(sent.msgid)
  t.equal(sim.accepted[0]?.template_id, DEMO_TEMPLATE_IDS.orderShipped)
  const [queued] = await app.wechat.enqueue([{ toUser: 'oUser-typed-000002', template: review, data: { thing1: '实名认证', enum_string2: '通过' } }])
  t.equal((await app.wechat.status(queued.id))?.templateId, DEMO_TEMPLATE_IDS.reviewResult)
  t.equal((await app.inject({ method: 'POST', url: '/ship' })).statusCode, 200)
  for (let i = 0; i < 1000 && sim.accepted.length < 3; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  t.same(sim.accepted.map((m) => m.touser).sort(), ['oUser-typed-000001', 'oUser-typed-000002', 'oUser-typed-000003'])

  const err = await app.wechat.send({ toUser: 'oUser-typed-000001', template: shipped, templateId: 'Other' as never, data: shippedData }).catch((e) => e)
  t.match(err.violations, [{ key: 'templateId', rule: 'conflict' }])
  const same = await app.wechat.send({ toUser: 'oUser-typed-000001', template: shipped, templateId: shipped.id as never, data: shippedData })
  t.ok(same.msgid, 'templateId equal to template.id is fine')
  await t.rejects(app.wechat.send({ toUser: 'o', template: { id: 5 } as never, data: shippedData }), { code: 'FST_WECHAT_INVALID_MESSAGE', violations: [{ key: 'template', rule: 'type' }] })
})

test('typed messages are validated with the declared keys when the account list is not known', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim, { plugin: { templates: false } })
  const wrong = { ...shippedData, thing2: '超'.repeat(21), thing9: 'x' } as Record<string, string>
  delete wrong.phrase5
  const err = await app.wechat.send({ toUser: 'oUser-typed-000001', template: shipped, data: wrong as never }).catch((e) => e)
  t.same(err.violations.map((v: { key: string, rule: string }) => `${v.key}:${v.rule}`).sort(), ['data.phrase5:missing', 'data.thing2:thing.maxLength', 'data.thing9:unknown_key'])
  await t.rejects(app.wechat.send({ toUser: 'oUser-typed-000001', template: review, data: { thing1: 'x', enum_string2: '拒绝' as never } }), { code: 'FST_WECHAT_INVALID_MESSAGE', violations: [{ rule: 'enum_string.notAllowed' }] })
  const broken = { id: 'T-broken', keys: { thing2: 'time' } }
  await t.rejects(app.wechat.send({ toUser: 'oUser-typed-000001', template: broken as never, data: { thing2: 'x' } as never }), { code: 'FST_WECHAT_INVALID_MESSAGE', violations: [{ key: 'template', rule: 'spec' }] })
  t.equal(sim.counters.send, 0)
  t.ok((await app.wechat.send({ toUser: 'oUser-typed-000001', template: shipped, data: shippedData })).msgid)
})

test('the account list wins over a declaration that disagrees with it', async (t) => {
  const sim = await startSimulator(t)
  const app = await buildApp(t, sim)
  const stale = defineTemplate(DEMO_TEMPLATE_IDS.orderShipped, { character_string1: 'character_string', thing2: 'thing' })
  await t.rejects(app.wechat.send({ toUser: 'oUser-typed-000001', template: stale, data: { character_string1: 'SO1', thing2: 'x' } }), {
    code: 'FST_WECHAT_INVALID_MESSAGE',
    violations: [{ key: 'data.amount3', rule: 'missing' }, { key: 'data.time4', rule: 'missing' }, { key: 'data.phrase5', rule: 'missing' }]
  })
})

function io (env: Record<string, string | undefined>): { io: Parameters<typeof main>[1], out: () => string, err: () => string } {
  let out = ''
  let err = ''
  return { io: { env, stdout: (s) => { out += s }, stderr: (s) => { err += s } }, out: () => out, err: () => err }
}

/** Type-checks generated files against the package source (the import is pointed at lib/index.ts); one program, it is slow. */
function compile (codes: string[]): string[] {
  // inside the project (under node_modules/.cache) so that 'fastify' resolves as it would for a user
  const cache = path.resolve('node_modules/.cache')
  mkdirSync(cache, { recursive: true })
  const dir = mkdtempSync(path.join(cache, 'wechat-cli-'))
  try {
    const files = codes.map((code, i) => {
      const file = path.join(dir, `templates${i}.ts`)
      writeFileSync(file, code.replace('from \'fastify-wechat-push\'', `from ${JSON.stringify(path.resolve('lib/index.js'))}`))
      return file
    })
    const program = ts.createProgram(files, { strict: true, noEmit: true, module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16, target: ts.ScriptTarget.ES2022, types: ['node'], skipLibCheck: true, esModuleInterop: true, typeRoots: [path.resolve('node_modules/@types')] })
    return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

test('CLI: prints the account templates as defineTemplate code that compiles and type-checks messages', async (t) => {
  const sim = await startSimulator(t)
  const run = io({ WECHAT_APPID: sim.appId, WECHAT_SECRET: sim.appSecret, WECHAT_BASE_URL: sim.url })
  t.equal(await main(['templates'], run.io), 0, run.err())
  const code = run.out()
  t.match(code, /import \{ defineTemplate \} from 'fastify-wechat-push'/)
  t.match(code, /\/\/ 订单发货通知 \(one-time\)\nexport const tpl_SimDemo_Orde = defineTemplate\('SimDemo-OrderShipped-OneTime-0000000000001', \{\n {2}character_string1: 'character_string', \/\/ 订单号\n/)
  // Audit: Chinese identifiers (valid TypeScript) were lost from the file's CommonJS exports under tsx
  // (esbuild escapes them, Node's export detection misses escapes): an ES module could not import them.
  const names = [...code.matchAll(/^export const (\S+) =/gm)].map((m) => m[1] as string)
  t.equal(names.length, 4)
  for (const name of names) t.match(name, /^[A-Za-z_$][A-Za-z0-9_$]*$/, `${name}: an ASCII identifier`)
  t.match(code, /enum_string2: \['通过', '未通过', '待补充'\] \/\/ 审核结果/)
  t.match(code, /\/\/ 会议提醒 \(long-term\)/)
  t.notMatch(code, new RegExp(sim.appSecret))

  const usage = `
declare const app: import('fastify').FastifyInstance
export const sent = app.wechat.send({ toUser: 'o', template: tpl_SimDemo_Orde, data: { character_string1: 'SO1', thing2: 'x', amount3: '¥1', time4: '15:01', phrase5: '已发货' } })
export const queued = app.wechat.enqueue([{ toUser: 'o', template: tpl_SimDemo_Revi, data: { thing1: 'x', enum_string2: '通过' } }])
// @ts-expect-error an enum value outside the template's list
export const bad = app.wechat.send({ toUser: 'o', template: tpl_SimDemo_Revi, data: { thing1: 'x', enum_string2: '拒绝' } })
// @ts-expect-error a missing key
export const missing = app.wechat.send({ toUser: 'o', template: tpl_SimDemo_Meet, data: { thing1: 'x' } })
`
  t.same(compile([code + usage, unusual()]), [], 'both outputs compile; messages to the declared templates type-check, wrong ones do not')
})

function unusual (): string {
  return renderTemplates([
    { priTmplId: 'a\'b', title: 'Order shipped!', content: 'It\'s:{{thing1.DATA}}\n{{time2.DATA}}', example: '', type: 2 },
    { priTmplId: 'c', title: 'order shipped', content: 'x:{{thing1.DATA}}\nweird:{{foo2.DATA}}', example: '', type: 3 },
    { priTmplId: 'd', title: '', content: '{{number1.DATA}}', example: '', type: 5 as never },
    { priTmplId: 'e', title: '2024 report', content: '{{enum3.DATA}}', example: '', type: 3 },
    { priTmplId: 'f', title: 'delete', content: '{{thing1.DATA}}', example: '', type: 3 },
    { priTmplId: 'g', title: 'eval', content: '{{thing1.DATA}}', example: '', type: 2 },
    { priTmplId: 'h', title: 'arguments', content: '{{thing1.DATA}}', example: '', type: 2 },
    // no keyword of a type this version knows, and no keyword at all: defineTemplate would throw
    { priTmplId: 'i', title: 'site only', content: '网址:{{site1.DATA}}', example: '', type: 2 },
    { priTmplId: 'j', title: 'no keys', content: 'nothing to fill in', example: '', type: 2 },
    // (audit: these two made a file that neither compiled nor loaded) a title that is the import's
    // name, and an enum key whose list WeChat sent empty (defineTemplate refuses an empty list)
    { priTmplId: 'k', title: 'defineTemplate', content: '{{thing1.DATA}}', example: '', type: 2 },
    { priTmplId: 'l', title: 'empty enum', content: '{{thing1.DATA}}\n{{enum_string2.DATA}}', example: '', type: 2, keywordEnumValueList: [{ keywordCode: 'enum_string2.DATA', enumValueList: [] }] },
    // a Chinese (or mixed) title is named by its id; two ids alike in their first 12 characters by the whole id
    { priTmplId: 'wDYgkxL1fQWlM5d1e0WsqJLpS-2G8Kyl0o3q7aEYZgo', title: '订单发货通知', content: '{{thing1.DATA}}', example: '', type: 2 },
    { priTmplId: 'wDYgkxL1fQWl-other', title: 'VIP会员到期', content: '{{thing1.DATA}}', example: '', type: 2 }
  ], { appId: 'wx1', generatedAt: new Date(0) })
}

test('CLI: names, escaping and unusual templates', async (t) => {
  const code = unusual()
  t.match(code, /export const orderShipped = defineTemplate\('a\\'b', \{\n {2}thing1: 'thing', \/\/ It's\n {2}time2: 'time'\n\}\)/)
  t.match(code, /export const orderShipped2 = /)
  t.match(code, /foo2: a keyword type this version does not know/)
  t.match(code, /\/\/ {2}\(type 5\)\nexport const tpl_d = /, 'no title: named by its id')
  t.match(code, /export const t2024Report = defineTemplate\('e', \{\n {2}enum3: 'enum'\n/)
  t.match(code, /export const deleteTemplate = /)
  t.match(code, /export const evalTemplate = /)
  t.match(code, /export const argumentsTemplate = /)
  t.match(code, /\/\/ site only \(one-time\): no keyword of a type this version knows \(site1\); send it by its id, 'i', untyped\n/)
  t.match(code, /\/\/ no keys \(one-time\): no keyword of a type this version knows \(none in its content\)/)
  t.notMatch(code, /= defineTemplate\('(i|j)'/)
  t.match(code, /export const defineTemplate2 = defineTemplate\('k', /, 'a title clashing with the import is renamed')
  t.match(code, /\/\/ 订单发货通知 \(one-time\)\nexport const tpl_wDYgkxL1fQWl = defineTemplate\('wDYgkxL1fQWlM5d1e0WsqJLpS-2G8Kyl0o3q7aEYZgo'/)
  t.match(code, /\/\/ VIP会员到期 \(one-time\)\nexport const tpl_wDYgkxL1fQWl_other = defineTemplate\('wDYgkxL1fQWl-other'/)
  t.match(code, /export const emptyEnum = defineTemplate\('l', \{\n {2}thing1: 'thing',\n {2}enum_string2: 'enum_string'\n\}\)/, 'an empty enum list is no list: the key is typed by its name')
  // The whole file runs: one declaration that throws would take every template in it down
  const body = code.replace(/^import .*$/m, '').replace(/^export const /gm, 'const ')
  const declared = runInNewContext(`${body}\n;[orderShipped, evalTemplate, argumentsTemplate, defineTemplate2, emptyEnum]`, { defineTemplate }) as unknown[]
  t.equal(declared.length, 5, 'the generated file evaluates without throwing')
  t.match(renderTemplates([], { appId: 'wx1', generatedAt: new Date(0) }), /no subscribe templates yet/)
})

test('CLI: usage, missing credentials and WeChat errors', async (t) => {
  const sim = await startSimulator(t)
  let run = io({})
  t.equal(await main(['--help'], run.io), 0)
  t.match(run.out(), /WECHAT_APPID/)
  run = io({})
  t.equal(await main([], run.io), 2)
  t.equal(await main(['templates', 'extra'], run.io), 2)
  t.equal(await main(['templates'], run.io), 2)
  t.match(run.err(), /WECHAT_APPID and WECHAT_SECRET must be set/)
  run = io({ WECHAT_APPID: sim.appId, WECHAT_SECRET: 'wrong-secret-do-not-print', WECHAT_BASE_URL: sim.url })
  t.equal(await main(['templates'], run.io), 1)
  t.match(run.err(), /Could not list the templates: FST_WECHAT_TOKEN/)
  t.match(run.err(), /check WECHAT_SECRET/, 'the advice names the variable the CLI reads, not the plugin option')
  t.notMatch(run.err(), /wrong-secret-do-not-print/)
  // (audit: 'Invalid URL' / 'invalid url' named nothing)
  for (const url of ['notaurl', `${sim.url}/cgi-bin`, `${sim.url}/?q=1`, 'ftp://example.com']) {
    run = io({ WECHAT_APPID: sim.appId, WECHAT_SECRET: sim.appSecret, WECHAT_BASE_URL: url })
    t.equal(await main(['templates'], run.io), 2, url)
    t.match(run.err(), /^WECHAT_BASE_URL: must /, url)
  }
})

/**
 * The program as shipped: package.json's bin, built (npm test builds first). Run without tap's
 * coverage (helpers/child-env.ts): its coverage of dist/ maps onto lib/ through tsc's line maps, not
 * the tests' own (main() is covered in process above).
 */
function runBin (t: Test, env: Record<string, string>): ChildProcessWithoutNullStreams | undefined {
  const bin = path.resolve((JSON.parse(readFileSync('package.json', 'utf8')) as { bin: Record<string, string> }).bin['fastify-wechat-push'] as string)
  if (!existsSync(bin)) {
    t.fail(`${path.relative(process.cwd(), bin)} is missing: run \`npm run build\` first (npm test does)`)
    return undefined
  }
  t.match(readFileSync(bin, 'utf8'), /^#!\/usr\/bin\/env node\n/, 'the bin starts with its shebang')
  return spawn(process.execPath, [bin, 'templates'], { env: { ...withoutCoverage(), ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
}

test('CLI: runs as a program (bin entry) with the shebang', async (t) => {
  const sim = await startSimulator(t, { templates: [DEMO_TEMPLATES[1] as never] })
  const child = runBin(t, { WECHAT_APPID: sim.appId, WECHAT_SECRET: sim.appSecret, WECHAT_BASE_URL: sim.url })
  if (!child) return
  let out = ''
  child.stdout.on('data', (chunk) => { out += String(chunk) })
  const code = await new Promise((resolve) => child.once('exit', resolve))
  t.equal(code, 0)
  t.match(out, /export const tpl_SimDemo_Meet = defineTemplate\('SimDemo-MeetingReminder-LongTerm-000000002', \{\n {2}thing1: 'thing', \/\/ 会议地点\n {2}date2: 'date' \/\/ 会议时间\n\}\)/)
})

// With WeChat unreachable the program exited mid-retry with code 0 and no output (the retry waits
// do not keep a process alive), so `templates > file.ts` silently emptied the file. Failed before.
test('CLI as a program: WeChat unreachable → exit code 1 and the reason on stderr, nothing on stdout', async (t) => {
  const child = runBin(t, { WECHAT_APPID: 'wx0000000000000000', WECHAT_SECRET: 'some-secret-000', WECHAT_BASE_URL: 'http://127.0.0.1:9' })
  if (!child) return
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk) => { out += String(chunk) })
  child.stderr.on('data', (chunk) => { err += String(chunk) })
  const code = await new Promise((resolve) => child.once('exit', resolve))
  t.equal(code, 1)
  t.equal(out, '')
  t.match(err, /FST_WECHAT_TOKEN|unreachable/)
  t.notMatch(err, /some-secret-000/)
})
