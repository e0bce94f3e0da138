/**
 * A server in a child process, for scenarios that need several: it prints `{"listening": port}`
 * on a line of stdout once it serves on 127.0.0.1, and is stopped with SIGKILL.
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import type { RunningServer } from './targets.js'

/** A running child server, with what it printed. */
export interface ServerProcess extends Pick<RunningServer, 'url' | 'stop'> {
  readonly child: ChildProcess
  /** Everything it wrote to stdout and stderr. */
  output(): string
}

/** Starts `command args` and resolves once it printed its port. */
export async function startServerProcess(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<ServerProcess> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk
  })
  const exited = once(child, 'exit')
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  }
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${command} printed no port in time:\n${output}`)),
      options.timeoutMs ?? 45_000,
    )
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output += `${line}\n`
      const port = /^\{"listening":(\d+)\}$/.exec(line)?.[1]
      if (!port) return
      clearTimeout(timer)
      resolve(Number(port))
    })
    void exited.then(([code]) => {
      clearTimeout(timer)
      reject(new Error(`${command} exited with ${code} before listening:\n${output}`))
    })
  }).catch(async (err) => {
    await stop()
    throw err
  })
  return { url: `http://127.0.0.1:${port}`, child, output: () => output, stop }
}
