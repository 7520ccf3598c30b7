/**
 * WeChat's errmsg, made safe to keep: it goes into errors, message records, `stats().recentFailures`,
 * the routes' answers and the status page. WeChat's own never carries a secret, but a gateway or proxy
 * on the way may answer with an errcode and echo the request (an audit: an errmsg quoting the call's
 * `…?access_token=…` reached a 422 body, the record and the dashboard). So the secrets the call used
 * and any `access_token=`/`secret=` value are redacted (redactErrmsg; a rid is read from that text),
 * and a page-sized text is cut (cutErrmsg).
 */

/** The longest errmsg kept, in UTF-16 units: WeChat's are under 200; a longer one is a proxy's page. */
export const ERRMSG_MAX = 512

const SECRET_PARAMS = /((?:access_token|secret|appsecret)=)[^&\s"'<>]+/gi

export function redactErrmsg (text: string, secrets: readonly string[]): string {
  let clean = text
  // (4 characters at least: a shorter "secret" would redact ordinary words)
  for (const secret of secrets) if (secret.length >= 4 && clean.includes(secret)) clean = clean.split(secret).join('[redacted]')
  return clean.replace(SECRET_PARAMS, '$1[redacted]')
}

export function cutErrmsg (clean: string): string {
  if (clean.length <= ERRMSG_MAX) return clean
  // (not between the two halves of a surrogate pair)
  const end = /[\uD800-\uDBFF]/.test(clean[ERRMSG_MAX - 1] ?? '') ? ERRMSG_MAX - 1 : ERRMSG_MAX
  return `${clean.slice(0, end)}… (cut at ${ERRMSG_MAX} characters)`
}
