import { randomBytes } from 'node:crypto'
import type { SimTemplate } from './types.js'

/** A keyword of a public template title, as `getpubtemplatekeywords` lists it (`rule` = data type). */
export interface LibraryKeyword {
  kid: number
  name: string
  example: string
  rule: string
  /** Fixed values of an enum keyword (becomes `keywordEnumValueList` of a selected template). */
  enumValues?: string[]
}

/** A public template title of the built-in library. */
export interface LibraryTitle {
  tid: number
  title: string
  type: 2 | 3
  categoryId: number
  keywords: LibraryKeyword[]
}

/** The account's categories (`getcategory`). */
export const CATEGORIES: ReadonlyArray<{ id: number, name: string }> = [
  { id: 616, name: '公交' },
  { id: 617, name: '网购' },
  { id: 618, name: '在线教育' }
]

const kw = (kid: number, name: string, rule: string, example: string, enumValues?: string[]): LibraryKeyword =>
  enumValues === undefined ? { kid, name, example, rule } : { kid, name, example, rule, enumValues }

/** The built-in public template library (`getpubtemplatetitles`, `getpubtemplatekeywords`, `addtemplate`). */
export const LIBRARY: readonly LibraryTitle[] = [
  {
    tid: 401,
    title: '乘车成功通知',
    type: 2,
    categoryId: 616,
    keywords: [kw(1, '线路名称', 'thing', '15路'), kw(2, '乘车时间', 'time', '2026年3月1日 08:15'),
      kw(3, '上车站点', 'thing', '人民广场'), kw(4, '扣款金额', 'amount', '¥2.00'), kw(5, '乘车状态', 'phrase', '已上车')]
  },
  {
    tid: 402,
    title: '公交到站提醒',
    type: 3,
    categoryId: 616,
    keywords: [kw(1, '线路', 'thing', '15路'), kw(2, '到站时间', 'time', '08:20'),
      kw(3, '站点', 'thing', '人民广场'), kw(4, '车牌号', 'car_number', '粤A8Z888')]
  },
  {
    tid: 501,
    title: '订单发货通知',
    type: 2,
    categoryId: 617,
    keywords: [kw(1, '订单号', 'character_string', 'SO20260301-0042'), kw(2, '商品名称', 'thing', '蓝色陶瓷杯'),
      kw(3, '快递公司', 'thing', '顺丰速运'), kw(4, '快递单号', 'character_string', 'SF1234567890'),
      kw(5, '发货时间', 'time', '2026-03-01 14:05'), kw(6, '订单状态', 'phrase', '已发货'),
      kw(7, '配送方式', 'enum_string', '快递', ['快递', '自提', '同城配送'])]
  },
  {
    tid: 502,
    title: '退款结果通知',
    type: 2,
    categoryId: 617,
    keywords: [kw(1, '退款金额', 'amount', '58.00元'), kw(2, '退款原因', 'thing', '不想要了'),
      kw(3, '退款时间', 'date', '2026年3月2日'), kw(4, '客服电话', 'phone_number', '400-800-8888')]
  },
  {
    tid: 10000001,
    title: '支付成功通知',
    type: 2,
    categoryId: 617,
    keywords: [kw(1, '商品', 'thing', '蓝色陶瓷杯'), kw(2, '金额', 'amount', '¥58.00'), kw(3, '支付时间', 'time', '14:05')]
  },
  {
    tid: 601,
    title: '课程开始提醒',
    type: 3,
    categoryId: 618,
    keywords: [kw(1, '课程名称', 'thing', '高等数学'), kw(2, '上课时间', 'time', '2026年3月1日 19:00'),
      kw(3, '授课老师', 'name', '李老师'), kw(4, '课程编号', 'number', '1024')]
  }
]

/** Whether a tid is a "new one-time" title (10000001 <= tid < 20000000), whose `kidList` must be empty. */
export function isNewOneTime (tid: number): boolean {
  return tid >= 10_000_001 && tid < 20_000_000
}

/** A fresh private template id: 43 url-safe characters, like WeChat's. */
export function makeTemplateId (): string {
  return randomBytes(33).toString('base64url').slice(0, 43)
}

/**
 * The private template that selecting `kids` of `title` creates. Keys are `rule + kid` (kid 1 with rule
 * `thing` gives `{{thing1.DATA}}`), in the order of `kids`; an enum key's code carries `.DATA`, as seen on
 * the wire.
 */
export function buildTemplate (title: LibraryTitle, kids: number[], priTmplId: string): SimTemplate {
  const chosen = kids.map((kid) => title.keywords.find((k) => k.kid === kid) as LibraryKeyword)
  const enums = chosen.filter((k) => k.enumValues !== undefined)
  const template: SimTemplate = {
    priTmplId,
    title: title.title,
    content: chosen.map((k) => `${k.name}:{{${k.rule}${k.kid}.DATA}}\n`).join(''),
    example: chosen.map((k) => `${k.name}:${k.example}\n`).join(''),
    type: title.type
  }
  if (enums.length > 0) {
    template.keywordEnumValueList = enums.map((k) => ({ keywordCode: `${k.rule}${k.kid}.DATA`, enumValueList: [...k.enumValues as string[]] }))
  }
  return template
}
