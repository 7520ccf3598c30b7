import { ENCODING_AES_KEY } from '../push/crypto.js'
import type { SimPushConfig } from './push.js'

const MODES = ['plaintext', 'compatible', 'safe']
const FORMATS = ['xml', 'json']
const CONFIG_FIELDS = new Set(['url', 'token', 'encodingAESKey', 'mode', 'format', 'path', 'sentEvents', 'toUserName'])

/**
 * Mode and format of one push (`sim.push` options or `pushConfig`): an unknown mode would otherwise be
 * taken as encrypted and an unknown format as XML, so the test would pass for the wrong reason.
 * @throws TypeError naming the bad argument
 */
export function assertPushShape (where: string, options: { mode?: unknown, format?: unknown }): void {
  if (options.mode !== undefined && !MODES.includes(options.mode as string)) {
    throw new TypeError(`${where}: mode must be 'plaintext', 'compatible' or 'safe'`)
  }
  if (options.format !== undefined && !FORMATS.includes(options.format as string)) {
    throw new TypeError(`${where}: format must be 'xml' or 'json'`)
  }
}

/**
 * Checks `pushConfig`'s argument when it is set, not when the first sent event fails in the background:
 * a bad key or a misspelt field used to be accepted and then every push failed silently.
 * @throws TypeError naming the bad field
 */
export function assertPushConfig (config: SimPushConfig): void {
  if (typeof config !== 'object' || config === null) throw new TypeError('pushConfig: config must be an object or null')
  for (const field of Object.keys(config)) {
    if (!CONFIG_FIELDS.has(field)) throw new TypeError(`pushConfig: unknown field ${JSON.stringify(field)}`)
  }
  if (typeof config.url !== 'string' || typeof config.token !== 'string') throw new TypeError('pushConfig: url and token are required')
  if (config.token === '') throw new TypeError('pushConfig: token must be a non-empty string')
  assertPushShape('pushConfig', config)
  if (config.encodingAESKey !== undefined && (typeof config.encodingAESKey !== 'string' || !ENCODING_AES_KEY.test(config.encodingAESKey))) {
    // WECHAT.md §6.1: 43 characters from [a-zA-Z0-9]. The key itself is never echoed.
    throw new TypeError('pushConfig: encodingAESKey must be 43 characters from [A-Za-z0-9]')
  }
  if ((config.mode === 'safe' || config.mode === 'compatible') && config.encodingAESKey === undefined) {
    throw new TypeError(`pushConfig: mode '${config.mode}' needs encodingAESKey`)
  }
  if (config.path !== undefined && (typeof config.path !== 'string' || !config.path.startsWith('/'))) {
    throw new TypeError('pushConfig: path must be a string starting with /')
  }
  if (config.sentEvents !== undefined && typeof config.sentEvents !== 'boolean') throw new TypeError('pushConfig: sentEvents must be a boolean')
  if (config.toUserName !== undefined && (typeof config.toUserName !== 'string' || config.toUserName === '')) {
    throw new TypeError('pushConfig: toUserName must be a non-empty string')
  }
}
