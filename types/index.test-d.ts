import Fastify from 'fastify'
import { expectAssignable, expectError, expectType } from 'tsd'
import wechatPush from '..'
import type { ChangeItem, EnqueueResult, ErrorClass, MessageEvent, OtherPush, PopupItem, PushEnvelope, SendResult, SentItem, SubscribeMessage, WechatPush } from '..'
import { buildSimUrlCheck, createSimulator, DEMO_TEMPLATES, WechatSimulator } from '../dist/testing'
import type { SimUrlCheckResult } from '../dist/testing'

const app = Fastify()

// valid options compile
app.register(wechatPush, { appId: 'wx1', appSecret: 's' })
app.register(wechatPush, {
  appId: 'wx1',
  appSecret: 's',
  baseUrl: ['https://api.weixin.qq.com', 'https://api2.weixin.qq.com'],
  tokenEndpoint: 'classic',
  refreshAhead: 300,
  refreshInterval: 30,
  store: 'redis',
  redisNamespace: 'shared',
  keyPrefix: 'wechat:',
  timeout: 5000,
  retry: { attempts: 3, minDelay: 200, maxDelay: 5000 },
  defaults: { miniprogramState: 'formal', lang: 'zh_CN', page: 'pages/index' },
  validation: 'truncate',
  queue: { concurrency: 4, limiter: { max: 100, duration: 1000 }, attempts: 5 },
  credits: 'enforce',
  namespace: 'shop'
})

// wrong options do not
expectError(app.register(wechatPush, { appId: 'wx1' }))
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', tokenEndpoint: 'magic' }))
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', validation: 'loose' }))
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', timeout: '5s' }))
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', unknownOption: true }))
// queue.replicaTimeout only beside queue.replicas (registration refuses it alone)
expectError(app.register(wechatPush, { appId: 'wx1', appSecret: 's', queue: { replicaTimeout: 500 } }))
app.register(wechatPush, { appId: 'wx1', appSecret: 's', queue: { replicas: 1, replicaTimeout: 500 } })
app.register(wechatPush, { appId: 'wx1', appSecret: 's', queue: { replicas: 1 } })
app.register(wechatPush, { appId: 'wx1', appSecret: 's', queue: false })

// decorators are typed
expectType<Promise<string>>(app.wechat.getToken())
expectType<Promise<string>>(app.wechat.getToken({ forceRefresh: true }))
const message: SubscribeMessage = { toUser: 'o1', templateId: 't', data: { thing1: 'x', number2: 3, time3: { value: '15:01' } } }
expectType<Promise<SendResult>>(app.wechat.send(message))
expectError(app.wechat.send({ toUser: 'o1', data: {} }))
expectError(app.wechat.send({ toUser: 'o1', templateId: 't', data: { thing1: true } }))
expectAssignable<WechatPush>(app.wechat.shop)
expectType<string>(app.wechat.appId)

// error constructors are exported for instanceof
expectType<boolean>(new Error('x') instanceof wechatPush.WechatApiError)
expectAssignable<string>(new wechatPush.WechatTokenError('x').code)

// the simulator subpath
expectType<Promise<WechatSimulator>>(createSimulator())
declare const sim: WechatSimulator
expectType<Promise<SimUrlCheckResult>>(sim.checkPushUrl())
expectType<Promise<SimUrlCheckResult>>(sim.checkPushUrl('http://127.0.0.1:3000', { token: 't', echostr: 'e' }))
declare const checked: SimUrlCheckResult
expectType<boolean>(checked.ok)
expectError(sim.checkPushUrl(undefined, { tokn: 't' }))
expectType<{ url: string, echostr: string }>(buildSimUrlCheck({ token: 't' }, Date.now()))

// queue, records, stats, credits
expectType<Promise<Array<{ id: string, status: 'pending' | 'sending' | 'sent' | 'delivered' | 'failed' | 'unknown', changes?: wechatPush.ValueChange[], duplicate?: true }>>>(app.wechat.enqueue([message], { idempotencyKey: 'k', delay: 1000 }))
app.wechat.enqueue(message).then(([result]) => { if (result) expectType<wechatPush.ValueChange[] | undefined>(result.changes) })
expectError(app.wechat.enqueue(message, { delay: '1s' }))
expectType<Promise<{ released: number }>>(app.wechat.resumeQueue())
app.wechat.status('id').then((record) => { if (record) expectType<wechatPush.Status>(record.status) })
app.wechat.stats().then((stats) => { expectType<number>(stats.delivered); expectType<Record<string, number>>(stats.errcodes) })
expectType<Promise<Record<string, number>>>(app.wechat.credits('openid'))
expectType<wechatPush.HandlerPushCounters>(app.wechat.handlerPushes())
expectType<number>(app.wechat.handlerPushes().waiting)

// push events are typed by name
app.wechat.on('subscribe_msg_popup_event', (event) => { expectType<string>(event.List[0].SubscribeStatusString) })
app.wechat.on('subscribe_msg_sent_event', (event) => { expectType<string>(event.List[0].MsgID); expectType<number>(event.List[0].ErrorCode) })
app.wechat.on('message:sent', (event) => { expectType<string>(event.id); expectType<string | undefined>(event.msgid); expectType<number>(event.attempts) })
app.wechat.on('message:failed', (event) => { expectType<number | undefined>(event.errcode); expectType<'sent' | 'delivered' | 'failed' | 'unknown'>(event.status) })
expectAssignable<MessageEvent['toUser']>('oUser')
app.wechat.on('token:fetched', (event) => { expectType<number>(event.expiresAt); expectType<'stable' | 'classic'>(event.endpoint) })
app.wechat.on('token:error', (event) => { expectType<number | undefined>(event.errcode); expectType<boolean>(event.retryable) })
// any other WeChat Event name is fine; a misspelt lifecycle name (one with ':') is not
app.wechat.on('user_enter_tempsession', (event) => { expectType<string>(event.FromUserName) })
expectError(app.wechat.on('message:bogus', () => {}))

// handler pushes
app.get('/', async (_request, reply) => {
  reply.wechatPush(message)
  reply.wechatPush([message, message])
  expectError(reply.wechatPush({ toUser: 'o1' }))
  return 'ok'
})
app.get('/declarative', { config: { wechatPush: (_request, _reply, _payload) => message } }, async () => 'ok')
expectError(app.get('/bad', { config: { wechatPush: 'nope' } }, async () => 'ok'))

// From a types audit (each failed before): readonly arrays of messages and DEMO_TEMPLATES as the
// simulator's templates; reply.wechatPush keeps the route's reply type for a chained send(); the
// push payload types are exported by name.
const plainList: readonly SubscribeMessage[] = [{ toUser: 'o', templateId: 't', data: { thing1: 'x' } }]
expectType<Promise<EnqueueResult[]>>(app.wechat.enqueue(plainList))
expectType<Promise<WechatSimulator>>(createSimulator({ templates: DEMO_TEMPLATES }))
app.get<{ Reply: { ok: boolean } }>('/typed-reply', async (_request, reply) => {
  expectError(reply.wechatPush(plainList).send({ ok: 'no' }))
  return reply.wechatPush(plainList).send({ ok: true })
})
expectAssignable<PopupItem>({ TemplateId: 't', SubscribeStatusString: 'accept' } as PopupItem)
expectType<ErrorClass>('transient' as ErrorClass)
expectType<PushEnvelope['FromUserName']>('' as PushEnvelope['FromUserName'])
expectType<ChangeItem['TemplateId']>('' as ChangeItem['TemplateId'])
expectType<SentItem['MsgID']>('' as SentItem['MsgID'])
expectType<OtherPush['MsgType']>('' as OtherPush['MsgType'])
