import { assertFields, isPlainObject } from './args.js'
import type { FieldNames } from './args.js'
import type { SimTemplate } from './types.js'

/** Ids of `DEMO_TEMPLATES`, for use in tests. */
export const DEMO_TEMPLATE_IDS = {
  /** One-time: order shipped (character_string1, thing2, amount3, time4, phrase5). */
  orderShipped: 'SimDemo-OrderShipped-OneTime-0000000000001',
  /** Long-term: meeting reminder (thing1, date2). */
  meetingReminder: 'SimDemo-MeetingReminder-LongTerm-000000002',
  /** One-time with an enum key: review result (thing1, enum_string2). */
  reviewResult: 'SimDemo-ReviewResult-OneTime-Enum-00000003',
  /** Long-term with every other keyword type (number, letter, symbol, phone, plate, name, short_thing). */
  allTypes: 'SimDemo-AllKeywordTypes-LongTerm-000000004'
} as const

/** The account templates a simulator starts with unless `templates` is given. */
export const DEMO_TEMPLATES: readonly SimTemplate[] = Object.freeze([
  {
    priTmplId: DEMO_TEMPLATE_IDS.orderShipped,
    title: '订单发货通知',
    content: '订单号:{{character_string1.DATA}}\n商品名称:{{thing2.DATA}}\n订单金额:{{amount3.DATA}}\n发货时间:{{time4.DATA}}\n订单状态:{{phrase5.DATA}}\n',
    example: '订单号:SO20260301-0042\n商品名称:蓝色陶瓷杯x2\n订单金额:¥58.00\n发货时间:2026-03-01 14:05\n订单状态:已发货\n',
    type: 2
  },
  {
    priTmplId: DEMO_TEMPLATE_IDS.meetingReminder,
    title: '会议提醒',
    content: '会议地点:{{thing1.DATA}}\n会议时间:{{date2.DATA}}\n',
    example: '会议地点:三楼会议室\n会议时间:2026年3月1日 15:00\n',
    type: 3
  },
  {
    priTmplId: DEMO_TEMPLATE_IDS.reviewResult,
    title: '审核结果通知',
    content: '审核内容:{{thing1.DATA}}\n审核结果:{{enum_string2.DATA}}\n',
    example: '审核内容:实名认证\n审核结果:通过\n',
    type: 2,
    keywordEnumValueList: [{ keywordCode: 'enum_string2.DATA', enumValueList: ['通过', '未通过', '待补充'] }]
  },
  {
    priTmplId: DEMO_TEMPLATE_IDS.allTypes,
    title: '综合信息通知',
    content: '数量:{{number1.DATA}}\n代码:{{letter2.DATA}}\n标记:{{symbol3.DATA}}\n电话:{{phone_number4.DATA}}\n' +
      '车牌:{{car_number5.DATA}}\n姓名:{{name6.DATA}}\n状态:{{short_thing7.DATA}}\n',
    example: '数量:12\n代码:ABC\n标记:+\n电话:+86-0766-66888866\n车牌:粤A8Z888挂\n姓名:张三\n状态:处理中\n',
    type: 3
  }
].map((t) => Object.freeze(t as SimTemplate)))

const KEY_PATTERN = /\{\{([a-z_]+\d+)\.DATA\}\}/g

/** The keys of a template, in layout order (`thing1`, `time2`, …). */
export function templateKeys (content: string): string[] {
  return [...content.matchAll(KEY_PATTERN)].map((m) => m[1] as string)
}

/** Allowed values of an enum key, matching `keywordCode` with or without `.DATA`. */
export function enumValues (template: SimTemplate, key: string): string[] | undefined {
  return template.keywordEnumValueList
    ?.find((entry) => entry.keywordCode.replace(/\.DATA$/, '') === key)
    ?.enumValueList
}

const SAMPLES: Record<string, string> = {
  thing: '示例内容',
  number: '100',
  letter: 'ABC',
  symbol: '+',
  character_string: 'SO20260301-0042',
  time: '2026年3月1日 14:05',
  date: '2026年3月1日',
  amount: '¥58.00',
  phone_number: '+86-0766-66888866',
  car_number: '粤A8Z888挂',
  name: '张三',
  phrase: '已完成',
  short_thing: '处理中'
}

/** The layout with each key replaced by a sample value of its type (an enum key gets its first value). */
export function buildExample (template: SimTemplate): string {
  return template.content.replace(KEY_PATTERN, (_match, key: string) => {
    const type = key.replace(/\d+$/, '')
    return enumValues(template, key)?.[0] ?? SAMPLES[type] ?? '示例'
  })
}

/** A deep copy, so callers' objects are never shared with the simulator's state. */
export function copyTemplate (t: SimTemplate): SimTemplate {
  return {
    ...t,
    keywordEnumValueList: t.keywordEnumValueList?.map((e) => ({ keywordCode: e.keywordCode, enumValueList: [...e.enumValueList] }))
  }
}

/**
 * Checks a template passed to the simulator.
 * @throws TypeError naming the problem
 */
export function assertTemplate (t: SimTemplate): void {
  if (!isPlainObject(t)) throw new TypeError('template must be an object')
  if (typeof t.priTmplId !== 'string' || t.priTmplId === '') throw new TypeError('template.priTmplId must be a non-empty string')
  const where = `template ${t.priTmplId}`
  assertFields(t, TEMPLATE_FIELDS, where, 'template', 'field')
  if (typeof t.title !== 'string') throw new TypeError(`${where}: title must be a string`)
  if (typeof t.content !== 'string' || templateKeys(t.content).length === 0) {
    throw new TypeError(`${where}: content must contain keys like {{thing1.DATA}}`)
  }
  if (t.type !== 2 && t.type !== 3) throw new TypeError(`${where}: type must be 2 or 3`)
  if (t.example !== undefined && typeof t.example !== 'string') throw new TypeError(`${where}: example must be a string`)
  const list: unknown = t.keywordEnumValueList
  // gettemplate's shape (WECHAT.md §4.1); anything else used to crash later ("map is not a function").
  if (list !== undefined && (!Array.isArray(list) || !list.every(isEnumEntry))) {
    throw new TypeError(`${where}: keywordEnumValueList must be an array of { keywordCode: string, enumValueList: string[] }`)
  }
}

const TEMPLATE_FIELDS: FieldNames<SimTemplate> = { priTmplId: true, title: true, content: true, example: true, type: true, keywordEnumValueList: true }

function isEnumEntry (entry: unknown): boolean {
  return isPlainObject(entry) && Object.keys(entry).every((key) => key === 'keywordCode' || key === 'enumValueList') &&
    typeof entry.keywordCode === 'string' && entry.keywordCode !== '' &&
    Array.isArray(entry.enumValueList) && entry.enumValueList.every((value) => typeof value === 'string')
}
