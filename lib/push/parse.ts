/**
 * Body parsing for pushes (WECHAT.md §6.3, §7). Both parsers accept hostile text and either return a
 * plain object or throw PushRejection ('xml' / 'json'); no other error type escapes.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { isInteger, isSafeNumber, parse as parseLossless } from 'lossless-json'
import { PushRejection } from './rejection.js'

// WeChat never sends a DTD, so any DOCTYPE/ENTITY declaration is an attack (billion laughs, XXE):
// refuse it before the parser sees it, so only the predefined and numeric entities are ever read.
const DTD = /<!(?:DOCTYPE|ENTITY)/i
const DTD_HERE = /<!(?:DOCTYPE|ENTITY)/iy

/**
 * Whether the text declares a DTD or an entity: `<!DOCTYPE` or `<!ENTITY` where markup starts, not
 * inside CDATA, a comment, a processing instruction or a tag's quoted attribute. A user's text pushed
 * in CDATA (`how do I write <!DOCTYPE html>?`, a customer-service message) is content, not a DTD (an
 * audit: such pushes were refused 400 and lost after WeChat's retries). The constructs are skipped the
 * way fast-xml-parser reads them (each to its first terminator; a tag to its `>` outside quotes), so
 * nothing the parser would take for a declaration is skipped; one left unterminated counts as a
 * declaration (the text is malformed anyway). One pass, linear in the text.
 */
function declaresDtd (text: string): boolean {
  if (!DTD.test(text)) return false
  let at = text.indexOf('<')
  while (at !== -1) {
    DTD_HERE.lastIndex = at
    if (DTD_HERE.test(text)) return true
    const end = markupEnd(text, at)
    if (end === -1) return true
    at = text.indexOf('<', end)
  }
  return false
}

/** Past the CDATA section, comment, processing instruction or tag that starts at `at`; -1 if it never ends. */
function markupEnd (text: string, at: number): number {
  if (text.startsWith('<![CDATA[', at)) return endOf(text, ']]>', at + 9)
  if (text.startsWith('<!--', at)) return endOf(text, '-->', at + 4)
  if (text.startsWith('<?', at)) return endOf(text, '?>', at + 2)
  return tagEnd(text, at + 1)
}

function endOf (text: string, terminator: string, from: number): number {
  const at = text.indexOf(terminator, from)
  return at === -1 ? -1 : at + terminator.length
}

/** Past the `>` that closes the tag starting before `from`, skipping quoted attribute values; -1 if none. */
function tagEnd (text: string, from: number): number {
  let quote = ''
  for (let i = from; i < text.length; i++) {
    const c = text[i]
    if (quote !== '') {
      if (c === quote) quote = ''
    } else if (c === '"' || c === "'") {
      quote = c
    } else if (c === '>') {
      return i + 1
    }
  }
  return -1
}

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
  if (typeof text !== 'string' || declaresDtd(text)) throw new PushRejection('xml')
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
