import type { Dispatcher } from 'undici'
import type { DeadlineEntry, Deadlines } from './deadlines.js'

/** The reason a call fails with when its deadline passed; `code` marks it as a timeout. */
export class DeadlineError extends Error {
  readonly code = 'WECHAT_DEADLINE'
}

/**
 * One HTTP request/answer, as an undici dispatch handler (`Dispatcher.dispatch`, what undici's own
 * `request()` is built on). We need the status and the body text only, so this skips what
 * `pool.request()` + `body.text()` add per call: a response stream, an async resource and an
 * abort-signal listener. The body is decoded as `body.text()` does (UTF-8, a BOM dropped); a 5xx
 * body is read and dropped. It is also the call's entry in Deadlines: when the deadline passes, the
 * request is aborted and the call fails with DeadlineError at once.
 */
export class Exchange implements DeadlineEntry, Dispatcher.DispatchHandler {
  readonly deadline: number
  done = false
  statusCode = 0
  text = ''
  readonly answer: Promise<Exchange>
  /** the body: most answers come in one chunk, an array only for more */
  private chunk: Buffer | null = null
  private chunks: Buffer[] | null = null
  private settled = false
  private controller: Dispatcher.DispatchController | null = null
  private reason: Error | null = null
  private resolve!: (exchange: Exchange) => void
  private reject!: (err: Error) => void

  constructor (private readonly deadlines: Deadlines) {
    this.deadline = deadlines.next()
    this.answer = new Promise<Exchange>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
  }

  /** Send the request; the answer (or the error) settles `answer`. `cancel` aborts it like its deadline. */
  start (dispatcher: Dispatcher, options: Dispatcher.DispatchOptions, cancel?: AbortSignal): Promise<Exchange> {
    if (cancel !== undefined) {
      if (cancel.aborted) return Promise.reject(cancel.reason)
      const cut = (): void => { this.abort(cancel.reason as Error) }
      cancel.addEventListener('abort', cut, { once: true })
      this.answer.then(() => { cancel.removeEventListener('abort', cut) }, () => { cancel.removeEventListener('abort', cut) })
    }
    this.deadlines.add(this)
    try {
      dispatcher.dispatch(options, this)
    } catch (err) {
      this.fail(err as Error)
    }
    return this.answer
  }

  expire (): void {
    this.abort(new DeadlineError(`no answer within ${this.deadlines.timeout} ms`))
  }

  private abort (reason: Error): void {
    if (this.settled) return
    this.reason = reason
    // Not started yet: onRequestStart aborts it as soon as the pool gets to it.
    this.controller?.abort(reason)
    this.fail(reason)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    if (this.reason !== null) controller.abort(this.reason)
    else this.controller = controller
  }

  onResponseStart (_controller: Dispatcher.DispatchController, statusCode: number): void {
    // 1xx are interim answers: the final one follows.
    if (statusCode >= 200) this.statusCode = statusCode
  }

  onResponseData (_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.statusCode >= 500) return
    if (this.chunk === null) this.chunk = chunk
    else (this.chunks ??= [this.chunk]).push(chunk)
  }

  onResponseEnd (): void {
    if (this.settled) return
    this.settled = true
    this.deadlines.finish(this)
    const body = this.chunks === null ? this.chunk : Buffer.concat(this.chunks)
    this.chunk = this.chunks = null
    this.text = body === null ? '' : decode(body)
    this.resolve(this)
  }

  onResponseError (_controller: Dispatcher.DispatchController, err: Error): void {
    this.fail(err)
  }

  private fail (err: Error): void {
    if (this.settled) return
    this.settled = true
    this.deadlines.finish(this)
    this.chunk = this.chunks = null
    this.reject(err)
  }
}

/** UTF-8 text of the body, without a BOM (what undici's `body.text()` answers). */
function decode (buffer: Buffer): string {
  const start = buffer.length > 2 && buffer[0] === 0xef && buffer[1] === 0xbb && buffer[2] === 0xbf ? 3 : 0
  return buffer.toString('utf8', start)
}
