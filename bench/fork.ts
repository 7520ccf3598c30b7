import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { pathToFileURL } from 'node:url'

/**
 * tsx's ESM+CJS loader as an absolute file URL: `node --import tsx` works on Node 20.6+, but a bare
 * `tsx` is resolved from the child's cwd, so we resolve it here once.
 */
const TSX_LOADER = pathToFileURL(require.resolve('tsx')).href

/** Fork a TypeScript file in a plain Node process with tsx loaded; stdout/stderr shared, IPC on. */
export function forkTs (file: string, env: Record<string, string> = {}, execArgv: string[] = []): ChildProcess {
  return fork(file, [], {
    execArgv: ['--import', TSX_LOADER, ...execArgv],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
}

/** The next IPC message of `type` from `child`; rejects if the child exits first or on timeout. */
export function nextMessage<T = Record<string, unknown>> (child: ChildProcess, type: string, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    const timer = setTimeout(() => { cleanup(); reject(new Error(`no '${type}' message within ${timeoutMs} ms`)) }, timeoutMs)
    const onMessage = (message: { type?: string }): void => {
      if (message?.type !== type) return
      cleanup()
      resolve(message as T)
    }
    const onExit = (code: number | null): void => { cleanup(); reject(new Error(`child exited with ${code} before '${type}'`)) }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

/** Resolves with the exit code once `child` has exited; SIGKILLs it after `timeoutMs`. */
export function exited (child: ChildProcess, timeoutMs = 20_000): Promise<number | null | 'killed'> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve(child.exitCode); return }
    const timer = setTimeout(() => { child.kill('SIGKILL'); resolve('killed') }, timeoutMs)
    child.once('exit', (code) => { clearTimeout(timer); resolve(code) })
  })
}
