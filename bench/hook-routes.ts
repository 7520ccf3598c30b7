/**
 * The routes bench/hook.ts measures, each in a pair: without a push and with `reply.wechatPush`.
 *
 * - trivial (`GET /plain`, `GET /push`): builds a message, answers a tiny object. The hook's cost
 *   against almost nothing: the worst case for the ratio.
 * - order (`POST /order`, `POST /order-push`): what an ordinary API route does per request. The body
 *   is a 2.5 kB JSON order (customer, address, 24 lines); Fastify parses it and validates it with a
 *   JSON schema (ajv); the handler prices every line (quantity × unit price, a 2-decimal discount,
 *   VAT), derives a sha256 ETag of the priced lines, and answers a 5 kB object serialised through a
 *   response schema (fast-json-stringify). About 200 µs of CPU per request on the bench machine
 *   (the table's "CPU µs/req" column gives the measured value).
 */
import { createHash } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { testing } from './built.js'
import type { SubscribeMessage } from '../lib/public-types.js'

const { DEMO_TEMPLATE_IDS } = testing

let serial = 0
export function message (suffix = ''): SubscribeMessage {
  serial++
  return {
    toUser: `oBench-hook-${process.pid}-${serial}${suffix}`,
    templateId: DEMO_TEMPLATE_IDS.orderShipped,
    page: `pages/order?id=${serial}`,
    data: { character_string1: `SO${serial}`, thing2: 'Blue ceramic mug x2', amount3: '¥58.00', time4: '2026-03-01 14:05', phrase5: '已发货' }
  }
}

const line = {
  type: 'object',
  required: ['sku', 'name', 'quantity', 'unitPrice'],
  additionalProperties: false,
  properties: {
    sku: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{5}$' },
    name: { type: 'string', minLength: 1, maxLength: 80 },
    quantity: { type: 'integer', minimum: 1, maximum: 999 },
    unitPrice: { type: 'number', minimum: 0 },
    discountPercent: { type: 'number', minimum: 0, maximum: 100 },
    tags: { type: 'array', items: { type: 'string', maxLength: 20 }, maxItems: 5 }
  }
} as const

const orderBody = {
  type: 'object',
  required: ['orderNo', 'customer', 'address', 'lines'],
  additionalProperties: false,
  properties: {
    orderNo: { type: 'string', pattern: '^SO[0-9]{8}$' },
    customer: {
      type: 'object',
      required: ['openid', 'name', 'email'],
      properties: { openid: { type: 'string', minLength: 8, maxLength: 64 }, name: { type: 'string', maxLength: 60 }, email: { type: 'string', format: 'email' }, vip: { type: 'boolean' } }
    },
    address: {
      type: 'object',
      required: ['line1', 'city', 'postcode', 'country'],
      properties: { line1: { type: 'string' }, line2: { type: 'string' }, city: { type: 'string' }, postcode: { type: 'string', pattern: '^[0-9]{6}$' }, country: { type: 'string', enum: ['CN', 'HK', 'TW', 'SG'] } }
    },
    lines: { type: 'array', minItems: 1, maxItems: 100, items: line },
    note: { type: 'string', maxLength: 500 }
  }
} as const

const pricedLine = {
  type: 'object',
  properties: {
    sku: { type: 'string' },
    name: { type: 'string' },
    quantity: { type: 'integer' },
    unitPrice: { type: 'number' },
    discount: { type: 'number' },
    net: { type: 'number' },
    vat: { type: 'number' },
    gross: { type: 'number' },
    label: { type: 'string' },
    tags: { type: 'array', items: { type: 'string' } }
  }
} as const

const orderReply = {
  200: {
    type: 'object',
    properties: {
      orderNo: { type: 'string' },
      status: { type: 'string' },
      etag: { type: 'string' },
      customer: { type: 'object', properties: { name: { type: 'string' }, email: { type: 'string' }, vip: { type: 'boolean' } } },
      shipTo: { type: 'string' },
      lines: { type: 'array', items: pricedLine },
      totals: { type: 'object', properties: { net: { type: 'number' }, vat: { type: 'number' }, gross: { type: 'number' }, items: { type: 'integer' } } },
      createdAt: { type: 'string' }
    }
  }
} as const

interface OrderLine { sku: string, name: string, quantity: number, unitPrice: number, discountPercent?: number, tags?: string[] }
interface Order {
  orderNo: string
  customer: { openid: string, name: string, email: string, vip?: boolean }
  address: { line1: string, line2?: string, city: string, postcode: string, country: string }
  lines: OrderLine[]
  note?: string
}

const round2 = (n: number): number => Math.round(n * 100) / 100

function priceOrder (order: Order): Record<string, unknown> {
  let net = 0
  let vat = 0
  let items = 0
  const lines = order.lines.map((l) => {
    const gross0 = l.quantity * l.unitPrice
    const discount = round2(gross0 * (l.discountPercent ?? 0) / 100)
    const lineNet = round2(gross0 - discount)
    const lineVat = round2(lineNet * 0.13)
    net += lineNet
    vat += lineVat
    items += l.quantity
    return { sku: l.sku, name: l.name, quantity: l.quantity, unitPrice: l.unitPrice, discount, net: lineNet, vat: lineVat, gross: round2(lineNet + lineVat), label: `${l.quantity} × ${l.name} (${l.sku})`, tags: l.tags ?? [] }
  })
  const etag = createHash('sha256').update(JSON.stringify(lines)).digest('hex')
  const a = order.address
  return {
    orderNo: order.orderNo,
    status: 'paid',
    etag,
    customer: { name: order.customer.name, email: order.customer.email, vip: order.customer.vip === true },
    shipTo: [a.line1, a.line2, `${a.postcode} ${a.city}`, a.country].filter(Boolean).join(', '),
    lines,
    totals: { net: round2(net), vat: round2(vat), gross: round2(net + vat), items },
    createdAt: new Date().toISOString()
  }
}

/** The request body autocannon sends to the order routes (2.5 kB). */
export function orderBodyJson (): string {
  const lines = Array.from({ length: 24 }, (_, i) => ({
    sku: `MUG-${String(10000 + i)}`,
    name: `Blue ceramic mug, size ${i % 4}`,
    quantity: 1 + (i % 3),
    unitPrice: 29 + i,
    discountPercent: i % 5 === 0 ? 10 : 0,
    tags: ['kitchen', 'gift']
  }))
  return JSON.stringify({
    orderNo: 'SO20260301',
    customer: { openid: 'oBench-customer-000001', name: 'Li Wei', email: 'li.wei@example.com', vip: true },
    address: { line1: '88 Century Avenue', line2: 'Floor 12', city: 'Shanghai', postcode: '200120', country: 'CN' },
    lines,
    note: 'Leave at the front desk'
  })
}

/**
 * The floor: what the least conceivable durable push costs, without the plugin. Each message's JSON is
 * written to Redis with a TTL (one SET per message, every message of one tick in one pipeline, as the
 * plugin batches its record writes), and nothing else: no validation, no id, no record status, no
 * queue job. With no Redis (the memory app) it is kept in a bounded array: not durable, the in-process
 * floor. No push can cost less than this, so its ratio to /plain bounds any push's.
 */
function floorWriter (app: FastifyInstance): (json: string) => void {
  const redis = (app as Partial<{ redis: import('ioredis').Redis }>).redis
  let batch: string[] = []
  let kept: string[] = []
  let serialKey = 0
  const flush = (): void => {
    const jsons = batch
    batch = []
    if (redis === undefined) {
      kept.push(...jsons)
      if (kept.length > 100_000) kept = []
      return
    }
    const pipeline = redis.pipeline()
    for (const json of jsons) pipeline.set(`bench:floor:${process.pid}:${serialKey++}`, json, 'EX', 600)
    pipeline.exec().catch(() => {})
  }
  return (json) => {
    if (batch.push(json) === 1) setImmediate(flush)
  }
}

export function registerBenchRoutes (app: FastifyInstance): void {
  const floor = floorWriter(app)
  app.get('/floor', async () => {
    const m = message()
    floor(JSON.stringify(m))
    return { ok: true, order: m.data.character_string1 }
  })
  app.get('/plain', async () => {
    const m = message()
    return { ok: true, order: m.data.character_string1 }
  })
  app.get('/push', async (_request, reply) => {
    const m = message()
    reply.wechatPush(m)
    return { ok: true, order: m.data.character_string1 }
  })
  const schema = { body: orderBody, response: orderReply }
  app.post('/order', { schema }, async (request) => priceOrder(request.body as Order))
  app.post('/order-push', { schema }, async (request, reply) => {
    const priced = priceOrder(request.body as Order)
    reply.wechatPush(message())
    return priced
  })
}
