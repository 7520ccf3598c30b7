import { test } from 'tap'
import { PLUGIN_NAME } from '../lib/version.js'

test('smoke', async (t) => {
  t.equal(PLUGIN_NAME, 'fastify-wechat-push')
})
