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

// The common compact answer is read by one pattern instead of JSON.parse: it must answer exactly what
// the general path answers, and anything it cannot read the same way must fall through to it.
test('the fast path for the common answer agrees with the general path', async (t) => {
  const general = (text: string): unknown => JSON.parse(text.replace(/("msgid"\s*:\s*)(\d+)/, '$1"$2"'))
  for (const text of [
    '{"errcode":0,"errmsg":"ok","msgid":2100000000000000123}',
    '{"errcode":0,"errmsg":"ok"}',
    '{"errcode":-1,"errmsg":"system error rid: 64b09fbb-56b7faa9-1054a9fe"}',
    '{"errcode":43101,"errmsg":"user refuse to accept the msg rid: 64b09fbb-56b7faa9-1054a9fe"}',
    '{"errcode":0,"errmsg":"","msgid":7}',
    '{"errcode":0,"errmsg":"好","msgid":00123}',
    '{"errcode":0,"errmsg":"ok","msgid":18446744073709551615}'
  ]) {
    t.same(parseWechatJson(text), general(text), text)
  }
  t.same(parseWechatJson('{"errcode":0,"errmsg":"ok","msgid":42}'), { errcode: 0, errmsg: 'ok', msgid: '42' }, 'msgid stays a string')
  t.equal(Object.is((parseWechatJson('{"errcode":-0,"errmsg":"x"}') as { errcode: number }).errcode, -0), true, '-0 as JSON.parse reads it')
  // Not the fast path's shape: escapes, other fields, long or malformed numbers, raw control characters.
  t.same(parseWechatJson('{"errcode":0,"errmsg":"a\\"b\\u4e2d","msgid":1}'), { errcode: 0, errmsg: 'a"b中', msgid: '1' })
  t.same(parseWechatJson('{"errcode":0,"errmsg":"ok","msgid":1,"extra":true}'), { errcode: 0, errmsg: 'ok', msgid: '1', extra: true })
  t.same(parseWechatJson('{"errcode":12345678901234567890,"errmsg":"ok"}'), { errcode: '12345678901234567890', errmsg: 'ok' })
  t.throws(() => parseWechatJson('{"errcode":01,"errmsg":"ok"}'), 'a leading zero is not JSON')
  t.throws(() => parseWechatJson('{"errcode":0,"errmsg":"a\u0001b"}'), 'a raw control character is not JSON')
  t.throws(() => parseWechatJson('{"errcode":0,"errmsg":"ok"} '.repeat(2)))
})

// A success whose msgid is written as a fraction or with an exponent used to leave invalid JSON
// (only the leading digits were quoted): the success read as a broken answer was sent again.
test('a msgid written as 123.0 or 2.1e18 is read, as its decimal digits', async (t) => {
  t.same(parseWechatJson('{"errcode":0,"errmsg":"ok","msgid":123.0}'), { errcode: 0, errmsg: 'ok', msgid: '123' })
  t.same(parseWechatJson('{"errcode":0,"errmsg":"ok","msgid":2.1e18}'), { errcode: 0, errmsg: 'ok', msgid: '2100000000000000000' })
  t.same(parseWechatJson('{"errcode":0,"msgid":2100000000000000123.0,"x":9007199254740993}'), { errcode: 0, msgid: '2100000000000000123', x: '9007199254740993' })
  t.same(parseWechatJson('{"msgid":12.5}'), { msgid: '12.5' }, 'not a whole number: kept as written')
  t.same(parseWechatJson('{"msgid":1E+3}'), { msgid: '1000' })
  t.same(parseWechatJson('{"msgid":42,"other":2100000000000000123}'), { msgid: '42', other: '2100000000000000123' }, 'msgid stays a string on the lossless path too')
})
