import type { StatsSnapshot } from '../store/records.js'

export interface PageInput {
  appId: string
  statsUrl: string
  refreshMs: number
  stats: StatsSnapshot
  nonce: string
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c] as string)
}

/**
 * JSON for a `<script type="application/json">` block. `<`, `>` and `&` are escaped so that no
 * value (an errmsg from WeChat, a templateId from a caller) can close the element or open another.
 */
export function scriptJson (value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
}

/** The pie's statuses in drawing order; 'sending' is counted with 'pending'. */
const SLICES = ['pending', 'sent', 'delivered', 'failed', 'unknown'] as const

/**
 * The status page: markup, style and script in one response, nothing loaded from elsewhere. The
 * script renders from the stats embedded at load and then from `statsUrl` every `refreshMs`; it
 * writes every value with textContent or setAttribute, never as HTML.
 */
export function dashboardPage (input: PageInput): string {
  const { nonce } = input
  const config = { statsUrl: input.statsUrl, refreshMs: input.refreshMs }
  const slices = SLICES.map((s) => `<path class="slice s-${s}" data-status="${s}" data-count="0" d=""><title></title></path>`).join('')
  const legend = SLICES.map((s) => `<li data-status="${s}"><span class="swatch s-${s}"></span><span class="label">${s === 'pending' ? 'pending + sending' : s}</span><span class="n">0</span><span class="pct"></span></li>`).join('')
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>WeChat push · ${escapeHtml(input.appId)}</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body data-renders="0">
<header>
  <h1>WeChat subscribe messages</h1>
  <p class="meta">AppID <code>${escapeHtml(input.appId)}</code> · <span id="state" role="status">loading…</span></p>
</header>
<noscript><p class="note">This page draws itself with JavaScript; GET ${escapeHtml(input.statsUrl)} has the same numbers as JSON.</p></noscript>
<main>
  <section class="card">
    <h2>Messages by status</h2>
    <div class="overview">
      <svg id="pie" viewBox="0 0 100 100" role="img" aria-label="messages by status"><circle class="ring" r="48" cx="50" cy="50"></circle>${slices}</svg>
      <ul id="legend">${legend}</ul>
    </div>
    <p class="totals">Total <strong id="total">0</strong> · no consent (43101) <strong id="noConsent">0</strong></p>
  </section>
  <section class="card">
    <h2>Errcodes</h2>
    <div class="scroll"><table><thead><tr><th>errcode</th><th class="num">Messages</th></tr></thead><tbody id="errcodes"></tbody></table></div>
  </section>
  <section class="card wide">
    <h2>Per template</h2>
    <div class="scroll"><table><thead><tr><th>Template</th><th class="num">Pending</th><th class="num">Sent</th><th class="num">Delivered</th><th class="num">Failed</th><th class="num">Unknown</th><th class="num">Total</th></tr></thead><tbody id="templates"></tbody></table></div>
  </section>
  <section class="card wide">
    <h2>Latest failures</h2>
    <div class="scroll"><table><thead><tr><th>When</th><th>Template</th><th>errcode</th><th>errmsg</th><th>Message id</th></tr></thead><tbody id="failures"></tbody></table></div>
  </section>
</main>
<script type="application/json" id="wechat-config">${scriptJson(config)}</script>
<script type="application/json" id="wechat-stats">${scriptJson(input.stats)}</script>
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`
}

const STYLE = `
:root { --bg: #f5f6f8; --card: #fff; --text: #1f2328; --muted: #656d76; --line: #e3e6ea;
  --pending: #e6a23c; --sent: #3b82f6; --delivered: #16a34a; --failed: #dc2626; --unknown: #9ca3af; }
@media (prefers-color-scheme: dark) { :root { --bg: #0d1117; --card: #161b22; --text: #e6edf3; --muted: #8d96a0; --line: #30363d; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "PingFang SC", "Microsoft YaHei", sans-serif; }
header { margin-bottom: 16px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 0 0 12px; }
.meta, .totals, .note { color: var(--muted); margin: 0; }
#state.error { color: var(--failed); font-weight: 600; }
main { display: grid; gap: 16px; grid-template-columns: repeat(2, minmax(0, 1fr)); }
@media (max-width: 760px) { main { grid-template-columns: minmax(0, 1fr); } body { padding: 12px; } }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px; min-width: 0; }
.wide { grid-column: 1 / -1; }
.overview { display: flex; align-items: center; gap: 24px; flex-wrap: wrap; margin-bottom: 12px; }
#pie { width: 180px; height: 180px; flex: none; }
.ring { fill: var(--line); }
.slice { stroke: var(--card); stroke-width: .6; stroke-linejoin: round; }
#legend { list-style: none; margin: 0; padding: 0; min-width: 200px; }
#legend li { display: grid; grid-template-columns: 14px 1fr auto 44px; gap: 8px; align-items: center; padding: 3px 0; }
.swatch { width: 12px; height: 12px; border-radius: 3px; }
.n { font-weight: 600; text-align: right; font-variant-numeric: tabular-nums; }
.pct { color: var(--muted); text-align: right; font-variant-numeric: tabular-nums; }
${SLICES.map((s) => `.s-${s} { fill: var(--${s}); background: var(--${s}); }`).join('\n')}
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: baseline; }
th { color: var(--muted); font-weight: 500; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.mono, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; overflow-wrap: anywhere; }
.errmsg { overflow-wrap: anywhere; min-width: 24ch; }
.when { white-space: nowrap; }
.scroll { overflow-x: auto; }
.empty-row td { color: var(--muted); text-align: center; }
`

/** Plain ES2017 for the browser; kept as text (it never runs in Node). */
const SCRIPT = `
(function () {
  'use strict'
  var ORDER = ${JSON.stringify(SLICES)}
  var config = JSON.parse(document.getElementById('wechat-config').textContent)
  // A token the page was opened with (?token=...) goes back as a Bearer header on each refresh.
  var token = new URLSearchParams(location.search).get('token')
  var renders = 0

  function $ (id) { return document.getElementById(id) }
  function cell (text, cls) {
    var td = document.createElement('td')
    td.textContent = text === undefined || text === null ? '' : String(text)
    if (cls) td.className = cls
    return td
  }
  function row (cells) {
    var tr = document.createElement('tr')
    cells.forEach(function (td) { tr.appendChild(td) })
    return tr
  }
  function fill (id, rows, columns, emptyText) {
    if (rows.length === 0) {
      var td = cell(emptyText)
      td.colSpan = columns
      var tr = row([td])
      tr.className = 'empty-row'
      rows = [tr]
    }
    $(id).replaceChildren.apply($(id), rows)
  }
  function counts (c) {
    return { pending: c.pending + c.sending, sent: c.sent, delivered: c.delivered, failed: c.failed, unknown: c.unknown }
  }
  function sum (c) { return ORDER.reduce(function (n, s) { return n + c[s] }, 0) }

  // One wedge path per status, clockwise from 12 o'clock; a lone status is a full disc.
  function wedge (from, to) {
    if (to - from <= 0) return ''
    if (to - from >= 1) return 'M 50 2 A 48 48 0 1 1 50 98 A 48 48 0 1 1 50 2 Z'
    function at (f) {
      var a = 2 * Math.PI * f - Math.PI / 2
      return (50 + 48 * Math.cos(a)).toFixed(3) + ' ' + (50 + 48 * Math.sin(a)).toFixed(3)
    }
    return 'M 50 50 L ' + at(from) + ' A 48 48 0 ' + (to - from > 0.5 ? 1 : 0) + ' 1 ' + at(to) + ' Z'
  }

  function renderPie (c) {
    var total = sum(c)
    var done = 0
    ORDER.forEach(function (status) {
      var n = c[status]
      var slice = $('pie').querySelector('[data-status="' + status + '"]')
      slice.setAttribute('data-count', String(n))
      slice.setAttribute('d', total === 0 ? '' : wedge(done / total, (done + n) / total))
      slice.querySelector('title').textContent = status + ': ' + n
      done += n
      var item = document.querySelector('#legend [data-status="' + status + '"]')
      item.querySelector('.n').textContent = String(n)
      item.querySelector('.pct').textContent = total === 0 ? '' : Math.round(n / total * 100) + '%'
    })
    $('total').textContent = String(total)
  }

  function render (stats) {
    renderPie(counts(stats))
    $('noConsent').textContent = String(stats.noConsent)
    var templates = Object.keys(stats.byTemplate).map(function (id) {
      var c = counts(stats.byTemplate[id])
      return { id: id, c: c, total: sum(c) }
    }).sort(function (a, b) { return b.total - a.total || (a.id < b.id ? -1 : 1) })
    fill('templates', templates.map(function (t) {
      return row([cell(t.id, 'mono')].concat(ORDER.map(function (s) { return cell(t.c[s], 'num') }), [cell(t.total, 'num')]))
    }), 7, 'no messages yet')
    fill('failures', stats.recentFailures.map(function (f) {
      var when = new Date(f.at)
      return row([cell(isNaN(when) ? f.at : when.toLocaleString(), 'when'), cell(f.templateId, 'mono'), cell(f.errcode), cell(f.errmsg, 'errmsg'), cell(f.id, 'mono')])
    }), 5, 'no failures')
    fill('errcodes', Object.keys(stats.errcodes).sort(function (a, b) { return stats.errcodes[b] - stats.errcodes[a] }).map(function (code) {
      return row([cell(code, 'mono'), cell(stats.errcodes[code], 'num')])
    }), 2, 'none')
    document.body.setAttribute('data-renders', String(++renders))
  }

  function state (text, failed) {
    $('state').textContent = text
    $('state').classList.toggle('error', failed)
  }

  function refresh () {
    if (document.hidden) return schedule()
    var headers = { accept: 'application/json' }
    if (token) headers.authorization = 'Bearer ' + token
    fetch(config.statsUrl, { credentials: 'same-origin', headers: headers, cache: 'no-store' })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status)
        return res.json()
      })
      .then(function (stats) {
        render(stats)
        state('updated ' + new Date().toLocaleTimeString(), false)
      }, function (err) {
        state('refresh failed (' + err.message + '); showing older numbers', true)
      })
      .then(schedule)
  }
  function schedule () { setTimeout(refresh, config.refreshMs) }

  render(JSON.parse($('wechat-stats').textContent))
  state('loaded ' + new Date().toLocaleTimeString() + ', refreshing every ' + config.refreshMs / 1000 + ' s', false)
  schedule()
})()
`
