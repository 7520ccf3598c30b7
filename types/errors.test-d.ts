import { expectAssignable, expectError, expectType } from 'tsd'
import wechatPush, { WechatApiError, WechatInvalidMessageError, WechatTokenError, WechatUpstreamError, fastifyWechatPush } from '..'

// the plugin is also a named export
expectType<typeof wechatPush>(fastifyWechatPush)
expectType<typeof wechatPush>(wechatPush.plugin)

declare const err: unknown

// instanceof narrows to the instance type, with the documented fields (README "Errors")
if (err instanceof wechatPush.WechatApiError) {
  expectType<'FST_WECHAT_API'>(err.code)
  expectType<502>(err.statusCode)
  expectType<number>(err.errcode)
  expectType<string>(err.errmsg)
  expectType<string | undefined>(err.rid)
  expectType<'token' | 'transient' | 'rate' | 'quota' | 'permanent'>(err.errorClass)
  expectType<boolean>(err.retryable)
  expectType<'failed' | 'unknown' | undefined>(err.outcome)
  expectType<string | undefined>(err.messageId)
  expectType<number | undefined>(err.retryAfter)
  expectAssignable<Error>(err)
  expectError(err.violations)
}
if (err instanceof WechatApiError) expectType<number>(err.errcode) // the named export narrows the same way

if (err instanceof wechatPush.WechatInvalidMessageError) {
  expectType<400>(err.statusCode)
  expectType<Array<{ key: string, rule: string, message: string, index?: number }>>(err.violations)
}
if (err instanceof WechatInvalidMessageError) expectType<string>(err.violations[0].rule)

if (err instanceof wechatPush.WechatTokenError) {
  expectType<'FST_WECHAT_TOKEN'>(err.code)
  expectType<number | undefined>(err.errcode) // absent when the endpoint was unreachable
  expectType<string | undefined>(err.errmsg)
  expectType<string | undefined>(err.rid)
  expectType<boolean>(err.retryable)
  expectType<number | undefined>(err.retryAfter)
  expectType<boolean | undefined>(err.held)
  expectType<'failed' | 'unknown' | undefined>(err.outcome)
  expectType<string | undefined>(err.messageId)
}
if (err instanceof WechatTokenError) expectType<boolean | undefined>(err.held)

if (err instanceof wechatPush.WechatUpstreamError) {
  expectType<504>(err.statusCode)
  expectType<boolean>(err.timedOut)
  expectType<boolean>(err.ambiguous)
  expectType<number | undefined>(err.httpStatus)
  expectType<'failed' | 'unknown' | undefined>(err.outcome)
  expectType<string | undefined>(err.messageId)
  expectError(err.errcode)
}
if (err instanceof WechatUpstreamError) expectType<boolean>(err.ambiguous)

if (err instanceof wechatPush.WechatNoCreditError) expectType<409>(err.statusCode)
if (err instanceof wechatPush.WechatQueueError) expectType<'FST_WECHAT_QUEUE'>(err.code)
if (err instanceof wechatPush.WechatStoreError) expectType<'FST_WECHAT_STORE'>(err.code)
if (err instanceof wechatPush.WechatOptionsError) expectType<500>(err.statusCode)

// the instance types have the classes' names, for annotations
function describe (error: wechatPush.WechatApiError | wechatPush.WechatUpstreamError): string {
  return error.code === 'FST_WECHAT_API' ? `errcode ${error.errcode}` : `timed out: ${String(error.timedOut)}`
}
expectType<string>(describe(new wechatPush.WechatApiError('x')))

// constructing one (a test double, say): a message and optionally { cause }
expectType<wechatPush.WechatApiError>(new wechatPush.WechatApiError('x', { cause: new Error('y') }))
expectError(new wechatPush.WechatApiError(42))
