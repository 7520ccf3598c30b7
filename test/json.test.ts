import { test } from 'tap'
import { parseWechatJson } from '../lib/api/json.js'

test('msgid keeps every digit, in every spacing WeChat might use', async (t) => {
  for (const text of [
    '{"errcode":0,"errmsg":"ok","msgid":2100000000000000123}',
    '{"errcode": 0, "errmsg": "ok", "msgid" : 2100000000000000123 }',
    '{"msgid":2100000000000000123,"errcode":0}'
  ]) {
    t.equal((parseWechatJson(text) as { msgid: string }).msgid, '2100000000000000123', text)
  }
})

test('a small msgid stays a string, other long numbers stay exact, strings are untouched', async (t) => {
  t.same(parseWechatJson('{"msgid":42}'), { msgid: '42' })
  t.same(parseWechatJson('{"other":2100000000000000123,"n":1}'), { other: '2100000000000000123', n: 1 })
  t.same(parseWechatJson('{"errmsg":"text with \\"msgid\\":123 inside"}'), { errmsg: 'text with "msgid":123 inside' })
  t.same(parseWechatJson('{"errmsg":"rid: 1234567890123456789"}'), { errmsg: 'rid: 1234567890123456789' })
  t.throws(() => parseWechatJson('<html>'))
})
