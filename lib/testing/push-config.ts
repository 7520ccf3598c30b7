import { ENCODING_AES_KEY } from '../push/crypto.js'
import { assertFields, assertOptionalBoolean, assertOptionalString } from './args.js'
import type { FieldNames } from './args.js'
import type { SimPushConfig, SimPushOptions } from './push.js'

const MODES = ['plaintext', 'compatible', 'safe']
const FORMATS = ['xml', 'json']
const CONFIG_FIELDS: FieldNames<SimPushConfig> = { url: true, token: true, encodingAESKey: true, mode: true, format: true, path: true, sentEvents: true, toUserName: true }
const PUSH_FIELDS: FieldNames<SimPushOptions> = { mode: true, format: true, token: true, encodingAESKey: true, path: true, timestamp: true, nonce: true, appId: true }

/**
 * What one push and the push configuration share (`sim.push` options or `pushConfig`): an unknown mode
 * would otherwise be taken as encrypted and an unknown format as XML, so the test would pass for the
 * wrong reason; a bad key is refused here, not by the cipher with a plain Error.
 * @throws TypeError naming the bad argument
 */
export function assertPushShape (where: string, options: { mode?: unknown, format?: unknown, encodingAESKey?: unknown, path?: unknown }): void {
  if (options.mode !== undefined && !MODES.includes(options.mode as string)) {
    throw new TypeError(`${where}: mode must be 'plaintext', 'compatible' or 'safe'`)
  }
  if (options.format !== undefined && !FORMATS.includes(options.format as string)) {
    throw new TypeError(`${where}: format must be 'xml' or 'json'`)
  }
  if (options.encodingAESKey !== undefined && (typeof options.encodingAESKey !== 'string' || !ENCODING_AES_KEY.test(options.encodingAESKey))) {
    // WECHAT.md §6.1: 43 characters from [a-zA-Z0-9]. The key itself is never echoed.
    throw new TypeError(`${where}: encodingAESKey must be 43 characters from [A-Za-z0-9]`)
  }
  if (options.path !== undefined && (typeof options.path !== 'string' || !options.path.startsWith('/'))) {
    throw new TypeError(`${where}: path must be a string starting with /`)
  }
}

/**
 * Checks the options of one push (`sim.push`, `buildSimPush`), merged with `pushConfig`: a misspelt
 * `encodingAesKey` used to be ignored and the push went out in plaintext.
 * @throws TypeError naming the bad option
 */
export function assertPushOptions (where: string, options: SimPushOptions): void {
  assertFields(options, PUSH_FIELDS, where, 'options', 'option')
  if (typeof options.token !== 'string' || options.token === '') throw new TypeError(`${where}: token is required (in the options or in pushConfig)`)
  assertPushShape(where, options)
  if (options.timestamp !== undefined && (!Number.isSafeInteger(options.timestamp) || options.timestamp < 0)) {
    throw new TypeError(`${where}: timestamp must be an integer >= 0 (Unix seconds)`)
  }
  assertOptionalString(options.nonce, where, 'nonce')
  assertOptionalString(options.appId, where, 'appId')
}

/**
 * Checks `pushConfig`'s argument when it is set, not when the first sent event fails in the background:
 * a bad key or a misspelt field used to be accepted and then every push failed silently.
 * @throws TypeError naming the bad field
 */
export function assertPushConfig (config: SimPushConfig): void {
  assertFields(config, CONFIG_FIELDS, 'pushConfig', 'config', 'field')
  if (typeof config.url !== 'string' || typeof config.token !== 'string') throw new TypeError('pushConfig: url and token are required')
  if (config.token === '') throw new TypeError('pushConfig: token must be a non-empty string')
  assertPushShape('pushConfig', config)
  if ((config.mode === 'safe' || config.mode === 'compatible') && config.encodingAESKey === undefined) {
    throw new TypeError(`pushConfig: mode '${config.mode}' needs encodingAESKey`)
  }
  assertOptionalBoolean(config.sentEvents, 'pushConfig', 'sentEvents')
  assertOptionalString(config.toUserName, 'pushConfig', 'toUserName')
}
