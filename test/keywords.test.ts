import fc from 'fast-check'
import { test } from 'tap'
import { codePointLength } from '../lib/delivery/keyword-rules.js'
import {
  AMOUNT_MAX_INTEGER_DIGITS,
  checkKeyword,
  fixKeyword,
  isKeywordKey,
  KEYWORD_LIMITS,
  KEYWORD_TYPES,
  keywordType,
  NAME_HAN_MAX_LENGTH,
  type KeywordCheckOptions
} from '../lib/delivery/keywords.js'

// The subtest object tap passes to a test callback (last overload of `test` is `test(cb)`).
type TapTest = Parameters<Parameters<typeof test>[0]>[0]

const rep = (s: string, n: number): string => s.repeat(n)
// JSON.stringify leaves U+2028/U+2029 raw, and a raw line separator in an assertion name breaks TAP.
const show = (v: string): string => JSON.stringify(v).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`)

// Asserts the rule id (null = valid) for each [key, value] pair, naming the case in the assertion.
function expectRules (t: TapTest, cases: Array<[key: string, value: string, rule: string | null]>, opts?: KeywordCheckOptions): void {
  for (const [key, value, rule] of cases) {
    t.equal(checkKeyword(key, value, opts)?.rule ?? null, rule, `${key} = ${show(value)}`)
  }
}

test('keyword key parsing', async (t) => {
  t.equal(keywordType('thing1'), 'thing')
  t.equal(keywordType('thing12'), 'thing')
  t.equal(keywordType('character_string12'), 'character_string')
  t.equal(keywordType('phone_number3'), 'phone_number')
  t.equal(keywordType('short_thing1'), 'short_thing')
  t.equal(keywordType('enum_string2'), 'enum_string')
  t.equal(keywordType('enum1'), 'enum')
  t.equal(keywordType('car_number10'), 'car_number')
  t.equal(keywordType('thing'), undefined, 'no index')
  t.equal(keywordType('character_string'), undefined, 'no index')
  t.equal(keywordType('site01'), undefined, 'unknown type (docs placeholder)')
  t.equal(keywordType('constructor1'), undefined, 'no prototype lookups')
  t.equal(keywordType('Thing1'), undefined, 'upper case')
  t.equal(keywordType('thing1.DATA'), undefined)

  t.ok(isKeywordKey('thing1'))
  t.ok(isKeywordKey('character_string12'))
  t.ok(isKeywordKey('site01'), 'syntax only, type not checked')
  t.notOk(isKeywordKey('thing'))
  t.notOk(isKeywordKey('1thing'))
  t.notOk(isKeywordKey('thing1.DATA'))
  t.notOk(isKeywordKey('Thing1'))

  t.equal(KEYWORD_TYPES.length, 15)
  t.ok(Object.isFrozen(KEYWORD_LIMITS))
})

test('empty values are rejected for every type, including unknown ones', async (t) => {
  for (const key of [...KEYWORD_TYPES.map((type) => `${type}1`), 'site01', 'nodigits']) {
    for (const value of ['', ' ', '\t\n', '\u3000']) {
      const v = checkKeyword(key, value)
      t.same(v, { key, rule: 'empty', message: `${key} must not be empty` }, `${key} = ${show(value)}`)
    }
  }
  t.equal(checkKeyword('site01', 'anything at all, no limit applies here'), null, 'unknown type: only non-empty')
  t.equal(checkKeyword('nodigits', 'x'), null)
})

test('non-string values are judged like WeChat would', async (t) => {
  t.equal(checkKeyword('number1', 42 as unknown as string), null, 'number is checked as its text')
  t.equal(checkKeyword('number1', -1 as unknown as string)?.rule, 'number.format')
  t.equal(checkKeyword('number1', 10n as unknown as string), null)
  t.equal(checkKeyword('thing1', null as unknown as string)?.rule, 'empty')
  t.equal(checkKeyword('thing1', { a: 1 } as unknown as string)?.rule, 'empty')
  t.same(fixKeyword('number1', 7 as unknown as string), { value: '7', changes: [] })
})

test('thing: 20 code points of anything', async (t) => {
  expectRules(t, [
    ['thing1', rep('a', 20), null],
    ['thing1', rep('a', 21), 'thing.maxLength'],
    ['thing1', rep('中', 20), null],
    ['thing1', rep('中', 21), 'thing.maxLength'],
    ['thing1', rep('😀', 20), null], // 40 UTF-16 units, 20 code points
    ['thing1', rep('😀', 21), 'thing.maxLength'],
    ['thing1', 'Blue ceramic mug x2', null],
    ['thing1', '订单 #1 已发货!', null]
  ])
  t.same(checkKeyword('thing3', rep('x', 23)), {
    key: 'thing3',
    rule: 'thing.maxLength',
    message: 'thing3 must be at most 20 characters (got 23)'
  })
})

test('short_thing: undocumented, so validated loosely (20); truncate still cuts to the observed 5', async (t) => {
  expectRules(t, [
    ['short_thing1', '已完成了吗', null],
    ['short_thing1', '已完成了吗?', null], // WECHAT.md §3: "validate loosely and let 47003 decide"
    ['short_thing1', rep('字', 20), null],
    ['short_thing1', rep('字', 21), 'short_thing.maxLength'],
    ['short_thing1', 'ab cd', null]
  ])
})

test('number: digits with one optional decimal point, at most 32 digits (the point not counted)', async (t) => {
  expectRules(t, [
    ['number1', '0', null],
    ['number1', '3.14', null],
    ['number1', rep('9', 32), null],
    ['number1', rep('9', 33), 'number.maxLength'],
    ['number1', rep('9', 31) + '.5', null], // WECHAT.md §3: "≤ 32 digits"
    ['number1', rep('9', 32) + '.5', 'number.maxLength'],
    ['number1', '-1', 'number.format'],
    ['number1', '+1', 'number.format'],
    ['number1', '1.2.3', 'number.format'],
    ['number1', '.5', 'number.format'],
    ['number1', '5.', 'number.format'],
    ['number1', '1,000', 'number.format'],
    ['number1', '12a', 'number.format'],
    ['number1', ' 12', 'number.format'],
    ['number1', '١٢', 'number.format'] // Arabic-Indic digits are not digits for WeChat
  ])
})

test('letter: ASCII letters only, 32', async (t) => {
  expectRules(t, [
    ['letter1', rep('a', 32), null],
    ['letter1', rep('Z', 33), 'letter.maxLength'],
    ['letter1', 'abc1', 'letter.charset'],
    ['letter1', 'ab cd', 'letter.charset'],
    ['letter1', 'é', 'letter.charset'],
    ['letter1', '中', 'letter.charset']
  ])
  t.equal(checkKeyword('letter1', 'ab1')?.message, 'letter1 may only contain ASCII letters (found "1")')
})

test('symbol: 5 symbols, no letters, digits, Chinese or control characters', async (t) => {
  expectRules(t, [
    ['symbol1', '+-*/%', null],
    ['symbol1', '+-*/%!', 'symbol.maxLength'],
    ['symbol1', '★☆', null],
    ['symbol1', '😀😀😀😀😀', null],
    ['symbol1', '😀😀😀😀😀😀', 'symbol.maxLength'],
    ['symbol1', '- -', null],
    ['symbol1', '!a', 'symbol.charset'],
    ['symbol1', '!1', 'symbol.charset'],
    ['symbol1', '!中', 'symbol.charset'],
    ['symbol1', '-\n-', 'symbol.controlChar'],
    ['symbol1', '-\r', 'symbol.controlChar'],
    ['symbol1', '-\t', 'symbol.controlChar'],
    ['symbol1', '\u0000!', 'symbol.controlChar'],
    ['symbol1', '!\u2028', 'symbol.controlChar']
  ])
  t.equal(checkKeyword('symbol2', '-\n-')?.message,
    'symbol2 must not contain line breaks or other control characters (found U+000A)')
})

test('character_string: 32 of digits, letters, symbols, no Chinese', async (t) => {
  expectRules(t, [
    ['character_string1', 'SO20260301-0042', null],
    ['character_string12', rep('A', 32), null],
    ['character_string12', rep('A', 33), 'character_string.maxLength'],
    ['character_string1', 'AB 12/#', null],
    ['character_string1', 'SO中01', 'character_string.charset'],
    ['character_string1', 'SO\n01', 'character_string.charset']
  ])
  t.match(checkKeyword('character_string1', 'a\u0007')?.message, /found U\+0007/)
})

test('time: 24-hour time, optional date, ranges with ~', async (t) => {
  expectRules(t, [
    ['time1', '15:01', null],
    ['time1', '9:05', null],
    ['time1', '00:00', null],
    ['time1', '23:59', null],
    ['time1', '23:59:59', null],
    ['time1', '2019年10月1日 15:01', null],
    ['time1', '2019年10月1日15:01', null],
    ['time1', '2026-03-01 14:05', null],
    ['time1', '2026/03/01 14:05', null],
    ['time1', '2026.3.1 14:05', null],
    ['time1', '2026-03-01  14:05:30', null],
    ['time1', '15:01~16:00', null],
    ['time1', '15:01 ~ 16:00', null],
    ['time1', '2019年10月1日 15:01 ~ 2019年10月2日 15:01', null],
    ['time1', '2019-10-01 15:01~17:00', null],
    ['time1', '24:00', 'time.invalid'],
    ['time1', '12:60', 'time.invalid'],
    ['time1', '12:30:60', 'time.invalid'],
    ['time1', '2019-13-01 12:00', 'time.invalid'],
    ['time1', '2019-02-29 12:00', 'time.invalid'],
    ['time1', '2020-02-29 12:00', null],
    ['time1', '2020-02-30 12:00', 'time.invalid'],
    ['time1', '2000-02-29 12:00', null],
    ['time1', '1900-02-29 12:00', 'time.invalid'],
    ['time1', '2019年0月1日 12:00', 'time.invalid'],
    ['time1', '2019-04-31 12:00', 'time.invalid'],
    ['time1', '2019-04-00 12:00', 'time.invalid'],
    ['time1', '15:01 ~ 25:00', 'time.invalid'],
    ['time1', '2019-10-01', 'time.format'],
    ['time1', '2019年10月1日', 'time.format'],
    ['time1', '3pm', 'time.format'],
    ['time1', '15:1', 'time.format'],
    ['time1', '15', 'time.format'],
    ['time1', '2019-10/01 15:01', 'time.format'],
    ['time1', '2019-10-0115:01', 'time.format'],
    ['time1', '2026-03-01T14:05', 'time.format'],
    ['time1', ' 15:01', 'time.format'],
    ['time1', '15:01 ', 'time.format'],
    ['time1', '15:01~', 'time.format'],
    ['time1', '~15:01', 'time.format'],
    ['time1', '1:00~2:00~3:00', 'time.format'],
    ['time1', '1574409000', 'time.format']
  ])
  t.equal(checkKeyword('time4', '2019-02-30 10:00')?.message, 'time4 has an invalid day (30 in month 2 of 2019)')
  t.equal(checkKeyword('time4', '24:00')?.message, 'time4 has an invalid hour (24); use the 24-hour clock 0-23')
  t.match(checkKeyword('time4', 'soon')?.message, /^time4 must be a 24-hour time/)
})

test('date: a date, optional 24-hour time, ranges with ~', async (t) => {
  expectRules(t, [
    ['date1', '2019年10月1日', null],
    ['date1', '2019年10月1日 15:01', null],
    ['date1', '2019-10-01', null],
    ['date1', '2019/10/01 15:01:02', null],
    ['date1', '2019.10.01', null],
    ['date1', '2019年10月1日~2019年10月7日', null],
    ['date1', '2019-10-01 ~ 2019-10-07', null],
    ['date1', '2019-10-01 08:00 ~ 2019-10-07 18:00', null],
    ['date1', '2019年10月1日 ~', 'date.format'],
    ['date1', '15:01', 'date.format'],
    ['date1', '2019-10-01 ~ 18:00', 'date.format'],
    ['date1', '2019年10月1日 ', 'date.format'],
    ['date1', '2019-10-01 25:00', 'date.invalid'],
    ['date1', '2019-10-32', 'date.invalid'],
    ['date1', '2019-1-1 ~ 2019-13-1', 'date.invalid'],
    ['date1', '10月1日', 'date.format'],
    ['date1', '2019-10-01 15', 'date.format']
  ])
  t.equal(checkKeyword('date2', '2019-13-01')?.message, 'date2 has an invalid month (13)')
  t.match(checkKeyword('date2', 'tomorrow')?.message, /^date2 must be a date such as 2019年10月1日/)
})

test('amount: optional currency symbol, ≤10 integer digits, decimals, optional 元', async (t) => {
  expectRules(t, [
    ['amount1', '¥58.00', null],
    ['amount1', '￥58.00', null],
    ['amount1', '$5', null],
    ['amount1', '€0.99', null],
    ['amount1', '£12', null],
    ['amount1', '58.00元', null],
    ['amount1', '¥58元', null],
    ['amount1', '58', null],
    ['amount1', '58.5', null],
    ['amount1', rep('9', 10), null],
    ['amount1', '¥' + rep('9', 10) + '.99', null],
    ['amount1', rep('9', 11), 'amount.maxDigits'],
    ['amount1', '¥' + rep('1', 11) + '元', 'amount.maxDigits'],
    ['amount1', '¥¥58', 'amount.format'],
    ['amount1', '58¥', 'amount.format'],
    ['amount1', '¥ 58', 'amount.format'],
    ['amount1', '-¥58', 'amount.format'],
    ['amount1', '1,000.00', 'amount.format'],
    ['amount1', '58元整', 'amount.format'],
    ['amount1', 'USD 5', 'amount.format'],
    ['amount1', '¥', 'amount.format'],
    ['amount1', '5.', 'amount.format']
  ])
  t.equal(checkKeyword('amount3', rep('1', 12))?.message,
    `amount3 must have at most ${AMOUNT_MAX_INTEGER_DIGITS} digits before the decimal point (got 12)`)
})

test('phone_number: 17 characters of digits and symbols', async (t) => {
  expectRules(t, [
    ['phone_number1', '+86-0766-66888866', null], // the §3 example, exactly 17
    ['phone_number1', '+86-0766-668888661', 'phone_number.maxLength'],
    ['phone_number1', '13800138000', null],
    ['phone_number1', '(010) 1234 5678', null],
    ['phone_number1', '400-800-1234#2', null],
    ['phone_number1', '138 ext 1', 'phone_number.charset'],
    ['phone_number1', '电话13800138000', 'phone_number.charset'],
    ['phone_number1', '１３８', 'phone_number.charset'],
    ['phone_number1', '138\n000', 'phone_number.charset'],
    ['phone_number1', '+-()', 'phone_number.format']
  ])
})

test('car_number: 8 characters, Chinese allowed first and last only', async (t) => {
  expectRules(t, [
    ['car_number1', '粤A8Z888挂', null],
    ['car_number1', '京A12345', null],
    ['car_number1', '京AD12345', null], // new-energy plate, 8 characters
    ['car_number1', 'A12345', null],
    ['car_number1', '京AD123456', 'car_number.maxLength'],
    ['car_number1', '京A1中345', 'car_number.format'],
    ['car_number1', '京A·12345', 'car_number.format'],
    ['car_number1', '京京A1234', 'car_number.format'],
    ['car_number1', '京', 'car_number.format']
  ])
})

test('name: 10 characters with Chinese, otherwise 20 letters/symbols', async (t) => {
  expectRules(t, [
    ['name1', '张三', null],
    ['name1', rep('张', 10), null],
    ['name1', rep('张', 11), 'name.maxLength'],
    ['name1', '张三 Zhang San', 'name.maxLength'], // mixed counts as Chinese: 13 > 10
    ['name1', '张三 Zhang', null],
    ['name1', rep('a', 20), null],
    ['name1', rep('a', 21), 'name.maxLength'],
    ['name1', "Jean-Luc O'Neil Jr.", null],
    ['name1', '艾力·买买提', null],
    ['name1', 'José Müller', null],
    ['name1', 'Agent 007', 'name.charset'],
    ['name1', '张三2', 'name.charset'],
    ['name1', 'Ann\nLee', 'name.charset']
  ])
  t.equal(checkKeyword('name2', rep('张', 11))?.message,
    'name2 must be at most 10 characters when it contains Chinese characters (got 11)')
  t.equal(checkKeyword('name2', rep('a', 21))?.message, 'name2 must be at most 20 characters (got 21)')
})

test('phrase: 5 Chinese characters, Chinese only', async (t) => {
  expectRules(t, [
    ['phrase1', '配送中', null],
    ['phrase1', '已发货', null],
    ['phrase1', '五个汉字呀', null],
    ['phrase1', '六个汉字呀呀', 'phrase.maxLength'],
    ['phrase1', '配送 中', 'phrase.charset'],
    ['phrase1', '配送中!', 'phrase.charset'],
    ['phrase1', '配送中。', 'phrase.charset'],
    ['phrase1', 'OK', 'phrase.charset']
  ])
})

test('enum and enum_string: one of the template values when known', async (t) => {
  const opts = { enumValues: ['已发货', '已签收'] }
  expectRules(t, [
    ['enum_string2', '已发货', null],
    ['enum_string2', '已退款', 'enum_string.notAllowed'],
    ['enum_string2', '已发货 ', 'enum_string.notAllowed'],
    ['enum1', '已签收', null],
    ['enum1', 'x', 'enum.notAllowed']
  ], opts)
  expectRules(t, [
    ['enum_string2', '任何值', null],
    ['enum1', rep('x', 100), null]
  ])
  t.equal(checkKeyword('enum_string2', 'x', opts)?.message,
    'enum_string2 must be one of the template\'s values: "已发货", "已签收" (got "x")')
  const many = { enumValues: Array.from({ length: 12 }, (_, i) => `v${i}`) }
  t.match(checkKeyword('enum1', 'x', many)?.message, /"v9", … \(12 values\) \(got "x"\)$/)
  t.notMatch(checkKeyword('enum1', 'x', many)?.message, /v10/)
})

test('fixKeyword: fixable values', async (t) => {
  const cases: Array<[key: string, value: string, fixed: string, changes: string[], opts?: KeywordCheckOptions]> = [
    ['thing1', 'Blue mug', 'Blue mug', []],
    ['thing1', rep('a', 25), rep('a', 20), ['cut to 20 characters']],
    ['thing1', rep('😀', 25), rep('😀', 20), ['cut to 20 characters']],
    // whole graphemes only (a cut at 20 code points left a dangling joiner / a bare letter); failed before
    ['thing1', rep('a', 18) + '👨‍👩‍👧', rep('a', 18), ['cut to 20 characters']],
    ['thing1', rep('a', 19) + 'e\u0301' + 'xyz', rep('a', 19), ['cut to 20 characters']],
    ['thing1', rep('a', 18) + 'e\u0301' + 'xyz', rep('a', 18) + 'e\u0301', ['cut to 20 characters']],
    // one cluster longer than the limit: cut at code points rather than emptied (then refused)
    ['thing1', 'Z' + rep('\u0301', 25) + 'alice', 'Z' + rep('\u0301', 19), ['cut to 20 characters']],
    ['thing1', '  订单已发货  ', '订单已发货', ['trimmed whitespace']],
    ['thing1', 'Blue mug\r\nx2\u0000', 'Blue mug x2', ['removed control characters']],
    ['thing1', rep('a', 19) + ' b', rep('a', 19), ['cut to 20 characters']],
    ['short_thing1', '已完成了吗?', '已完成了吗', ['cut to 5 characters']],
    ['number1', ' 3.14\n', '3.14', ['removed control characters', 'trimmed whitespace']],
    ['letter1', rep('a', 40), rep('a', 32), ['cut to 32 characters']],
    ['symbol1', '-\n-', '- -', ['removed control characters']],
    ['symbol1', '★★★★★★★', '★★★★★', ['cut to 5 characters']],
    ['character_string1', '\tSO-1 ', 'SO-1', ['removed control characters', 'trimmed whitespace']],
    ['time1', ' 2026-03-01 14:05 ', '2026-03-01 14:05', ['trimmed whitespace']],
    ['time1', '15:01 ~ 16:00', '15:01 ~ 16:00', []],
    ['date1', '2019年10月1日\n', '2019年10月1日', ['removed control characters', 'trimmed whitespace']],
    ['amount1', '¥58.00', '¥58.00', []],
    ['phone_number1', ' +86-0766-66888866 ', '+86-0766-66888866', ['trimmed whitespace']],
    ['car_number1', '京A·12345', '京A12345', ['removed separators']],
    ['car_number1', ' 粤A 8Z888-挂', '粤A8Z888挂', ['trimmed whitespace', 'removed separators']],
    ['name1', rep('张', 12), rep('张', 10), ['cut to 10 characters']],
    ['name1', rep('a', 22), rep('a', 20), ['cut to 20 characters']],
    ['name1', 'Alexander Hamilton 汉密尔顿', 'Alexander', ['cut to 10 characters']],
    ['phrase1', '六个汉字呀呀', '六个汉字呀', ['cut to 5 characters']],
    ['enum_string2', ' 已发货 ', '已发货', ['trimmed whitespace'], { enumValues: ['已发货'] }],
    ['enum1', 'anything', 'anything', []],
    ['site01', '\u0007hello', 'hello', ['removed control characters']],
    ['nodigits', 'x', 'x', []]
  ]
  for (const [key, value, fixed, changes, opts] of cases) {
    const name = `${key} = ${show(value)}`
    const result = fixKeyword(key, value, opts)
    t.same(result, { value: fixed, changes }, name)
    t.equal(checkKeyword(key, fixed, opts), null, `${name} fixed value passes`)
  }
})

test('fixKeyword: values that cannot be fixed', async (t) => {
  const cases: Array<[key: string, value: string, opts?: KeywordCheckOptions]> = [
    ['thing1', ''],
    ['thing1', ' \n\t '],
    ['site01', '\u0000'],
    ['short_thing1', '   '],
    ['number1', '12a'],
    ['number1', rep('1', 40)], // cutting would change the number
    ['letter1', 'abc1'],
    ['symbol1', 'a!'],
    ['character_string1', rep('A', 33)], // an id cut short is a wrong id
    ['character_string1', '订单1'],
    ['time1', '2019-02-30 10:00'],
    ['time1', 'tomorrow'],
    ['date1', '2019-13-01'],
    ['amount1', '1,000'],
    ['amount1', rep('9', 11)],
    ['phone_number1', '+86-0766-66888866-123'],
    ['phone_number1', 'call me'],
    ['car_number1', '京AD1234567'],
    ['car_number1', '京A1中345'],
    ['name1', 'Agent 007'],
    ['phrase1', 'OK'],
    ['enum_string2', '已退款', { enumValues: ['已发货'] }],
    ['enum1', ' ', { enumValues: [' '] }]
  ]
  for (const [key, value, opts] of cases) {
    t.equal(fixKeyword(key, value, opts), null, `${key} = ${show(value)}`)
  }
})

test('fixKeyword output always passes checkKeyword', async (t) => {
  const samples = [
    '', ' ', 'a', 'abc', '中文', '😀', '¥58.00', '58元', '15:01', '2019-10-01 15:01', '2019年10月1日',
    '15:01 ~ 16:00', '+86-0766-66888866', '京A·12345', '粤A8Z888挂', '张三', 'Jean-Luc', '配送中', '★',
    '- -\n', '\u0000\u0001x', rep('a', 50), rep('中', 50), rep('😀', 50), rep('1', 50), rep('-', 50),
    ' padded value ', 'tab\there', 'Zhang San 张三丰先生老爷', rep('ab ', 10)
  ]
  let fixed = 0
  for (const type of KEYWORD_TYPES) {
    for (const value of samples) {
      for (const opts of [undefined, { enumValues: ['配送中', 'a'] }]) {
        const key = `${type}7`
        const result = fixKeyword(key, value, opts)
        if (result !== null) {
          fixed++
          const violation = checkKeyword(key, result.value, opts)
          const name = `${key} = ${show(value)} -> ${show(result.value)}`
          // Only failures are reported, so the ~300 combinations do not flood the output.
          if (violation !== null) t.fail(`${name} is invalid`, { violation })
          if ((result.value === value) !== (result.changes.length === 0)) t.fail(`${name} reports changes wrongly`, result)
        }
      }
    }
  }
  t.ok(fixed > 100, `fixed ${fixed} values`)
  t.equal(NAME_HAN_MAX_LENGTH, 10)
})

// The charset rules answer most values with one whole-string pattern and walk the characters only to
// name the first one refused: both must agree on every string, including lone surrogates and astral
// characters. The reference here is the per-character definition of each rule (WECHAT.md §3).
test('charset rules: the whole-string fast path agrees with the per-character rule', async (t) => {
  const HAN = /\p{Script=Han}/u
  const CONTROL = /[\p{Cc}\u2028\u2029]/u
  const LETTER_OR_NUMBER = /[\p{L}\p{N}]/u
  const allowed: Record<string, (ch: string) => boolean> = {
    letter1: (ch) => /^[A-Za-z]$/.test(ch),
    character_string1: (ch) => !HAN.test(ch) && !CONTROL.test(ch),
    phone_number1: (ch) => /^[0-9]$/.test(ch) || !(LETTER_OR_NUMBER.test(ch) || CONTROL.test(ch)),
    name1: (ch) => !/\p{N}/u.test(ch) && !CONTROL.test(ch),
    phrase1: (ch) => /^\p{Script=Han}$/u.test(ch)
  }
  const SEED = Number(process.env.FUZZ_SEED ?? 20260301)
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 12 }), fc.string({ unit: fc.constantFrom('a', 'Z', '7', '中', '·', ' ', '\n', '\u2028', '\ud800', '😀', '٣', 'é'), maxLength: 8 }), (any, mixed) => {
    for (const value of [any, mixed, `${mixed}${any}`]) {
      if (value.trim() === '') continue
      for (const [key, ok] of Object.entries(allowed)) {
        const refused = [...value].find((ch) => !ok(ch))
        const rule = checkKeyword(key, value)?.rule ?? ''
        if (refused !== undefined && !rule.endsWith('.charset')) throw new Error(`${key} = ${show(value)}: ${show(refused)} should be refused, got ${rule || 'valid'}`)
        if (refused === undefined && rule.endsWith('.charset')) throw new Error(`${key} = ${show(value)}: no character should be refused, got ${rule}`)
      }
    }
  }), { numRuns: 3000, seed: SEED })
  t.pass('3000 random strings agree')
})

test('lengths count code points, lone surrogates as one', async (t) => {
  t.equal(codePointLength(''), 0)
  t.equal(codePointLength('abc'), 3)
  t.equal(codePointLength('😀😀'), 2)
  t.equal(codePointLength('\ud800'), 1)
  t.equal(codePointLength('\ud800\ud800\udc00'), 2)
  t.equal(codePointLength('\udc00\ud800'), 2)
  t.equal(codePointLength('a\ud83d'), 2)
  fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => codePointLength(s) === [...s].length), { numRuns: 2000, seed: 7 })
  t.equal(checkKeyword('thing1', '😀'.repeat(20)), null, '20 emoji are 20 characters (40 UTF-16 units)')
  t.equal(checkKeyword('thing1', '😀'.repeat(21))?.rule, 'thing.maxLength')
})
