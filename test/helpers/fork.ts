import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import path from 'node:path'

export const FIXTURES = path.join(__dirname, '..', 'fixtures')

/** Fork a TypeScript fixture with the same loader flags tap gave us. */
export function forkFixture (name: string, env: Record<string, string>): ChildProcess {
  return fork(path.join(FIXTURES, name), [], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
}

export function nextMessage<T = Record<string, unknown>> (child: ChildProcess, type: string, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${type}' message within ${timeoutMs} ms`)), timeoutMs)
    const onMessage = (message: { type?: string }): void => {
      if (message?.type !== type) return
      clearTimeout(timer)
      child.off('message', onMessage)
      resolve(message as T)
    }
    child.on('message', onMessage)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`child exited with ${code} before '${type}'`)) })
  })
}

export function exitCode (child: ChildProcess, timeoutMs: number): Promise<number | null | 'timeout'> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) { resolve(child.exitCode); return }
    const timer = setTimeout(() => { resolve('timeout'); child.kill('SIGKILL') }, timeoutMs)
    child.once('exit', (code) => { clearTimeout(timer); resolve(code) })
  })
}
