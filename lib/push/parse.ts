/**
 * Body parsing for pushes (WECHAT.md §6.3, §7). Both parsers accept hostile text and either return a
 * plain object or throw PushRejection ('xml' / 'json'); no other error type escapes.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { isInteger, isSafeNumber, parse as parseLossless } from 'lossless-json'
import { PushRejection } from './rejection.js'

// WeChat never sends a DTD, so any DOCTYPE/ENTITY is an attack (billion laughs, XXE): refuse it
// before the parser sees it, so only the predefined and numeric entities are ever read.
const DTD = /<!(?:DOCTYPE|ENTITY)/i

const xmlParser = new XMLParser({
  // Text outside CDATA is read as XML says: `&amp;` is `&`, `&#65;` is `A` (an audit: an openid came
  // through as `x4&amp;y`). WeChat puts its strings in CDATA (§7), which stays literal. No DTD gets
  // here (DTD above), so nothing can define an entity of its own: no expansion attack.
  processEntities: true,
  // (numeric character references; it also reads HTML's named ones, which XML lacks, harmlessly)
  htmlEntities: true,
  parseTagValue: false, // keep "2100000000000000123" and "0" as strings; events.ts coerces (§7.3)
  ignoreAttributes: true,
  cdataPropName: false, // merge CDATA into the element text
  ignoreDeclaration: true,
  ignorePiTags: true,
  // One <List> or several, always an array (§7 "Parsing gotchas").
  isArray: (tagName) => tagName === 'List'
})

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** undefined when the validator refuses the text or the parser throws (nesting limit, `__proto__` tags…). */
function parseWellFormed (text: string): unknown {
  try {
    return XMLValidator.validate(text) === true ? xmlParser.parse(text) : undefined
  } catch {
    return undefined
  }
}

/** Parse a WeChat XML body whose root must be `<xml>`; returns the root's children. */
export function parseXml (text: string): Record<string, unknown> {
  if (typeof text !== 'string' || DTD.test(text)) throw new PushRejection('xml')
  const doc = parseWellFormed(text)
  if (doc === undefined) throw new PushRejection('xml', 'not well-formed')
  // The validator accepts a sequence of self-closed roots (`<xml/><b/>`), so check there is one root.
  if (!isRecord(doc) || Object.keys(doc).length !== 1 || !('xml' in doc)) {
    throw new PushRejection('xml', 'root element must be <xml>')
  }
  const root = doc.xml
  if (root === '') return {} // `<xml/>`: empty, let normalizePush decide
  if (!isRecord(root)) throw new PushRejection('xml', 'root element has no fields')
  return root
}

/**
 * Keep every digit of integers beyond 2^53 (a bare 64-bit MsgID, §7.3, §10.6) by returning them as
 * strings; all other numbers become ordinary numbers (fractions may round, as with JSON.parse).
 */
function parseNumber (value: string): number | string {
  return isInteger(value) && !isSafeNumber(value) ? value : Number(value)
}

/** Parse a JSON body; it must be an object. Duplicate keys with different values are refused. */
export function parseJson (text: string): Record<string, unknown> {
  if (typeof text !== 'string') throw new PushRejection('json')
  let value: unknown
  try {
    // lossless-json also stores a "__proto__" key as an own property, like JSON.parse.
    value = parseLossless(text, null, { parseNumber })
  } catch {
    throw new PushRejection('json', 'not valid JSON')
  }
  if (!isRecord(value)) throw new PushRejection('json', 'not a JSON object')
  return value
}
