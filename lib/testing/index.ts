/**
 * `fastify-wechat-push/testing`: a WeChat API simulator for tests (WECHAT.md §0–§4).
 * @example
 * import { createSimulator, DEMO_TEMPLATE_IDS } from 'fastify-wechat-push/testing'
 * const sim = await createSimulator()
 * t.teardown(() => sim.close())
 * @module
 */
export { createSimulator, FIRST_MSGID, WechatSimulator } from './simulator.js'
export { SimulatorClock } from './clock.js'
export { buildSimPush, DEFAULT_TO_USER_NAME } from './push-request.js'
export { buildSimUrlCheck } from './url-check.js'
export type { SimUrlCheckOptions, SimUrlCheckRequest, SimUrlCheckResult } from './url-check.js'
export { isReceipt, PUSH_ATTEMPTS, PUSH_RETRY_DELAY_MS, PUSH_TIMEOUT_MS } from './push-delivery.js'
export type { SimChangeItem, SimPopupItem, SimPushConfig, SimPushFormat, SimPushMode, SimPushOptions, SimPushRecord, SimPushRequest, SimPushResult } from './push.js'
export { DEMO_TEMPLATE_IDS, DEMO_TEMPLATES } from './templates.js'
export { CATEGORIES, LIBRARY } from './library.js'
export type { LibraryKeyword, LibraryTitle } from './library.js'
export { MAX_TEMPLATES } from './routes-templates.js'
export { OPENID_FORMAT } from './routes-send.js'
export { TOKEN_FORMAT } from './tokens.js'
export type { TokenKind } from './tokens.js'
export type { FaultTarget } from './faults.js'
export { ERRMSG } from './wire.js'
export { SIM_ENDPOINTS } from './types.js'
export type {
  ClockLike,
  SimAcceptedMessage,
  SimEndpoint,
  SimFault,
  SimRequestRecord,
  SimTemplate,
  SimTokenFetches,
  SimulatorOptions
} from './types.js'
