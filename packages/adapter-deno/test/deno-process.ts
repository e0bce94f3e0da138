/**
 * Starts `test/server.ts` in the real Deno, the binary this package's `deno` devDependency brings,
 * with the narrowest permissions: the network on 127.0.0.1 only, no prompt, no update check.
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { ChildControl } from '@handshake/conformance'

const here = dirname(fileURLToPath(import.meta.url))

/** The Deno executable of the `deno` npm package (its postinstall puts it beside package.json). */
export function denoBinary(): string {
  const require = createRequire(join(here, '..', 'package.json'))
  const folder = dirname(require.resolve('deno/package.json'))
  const binary = join(folder, process.platform === 'win32' ? 'deno.exe' : 'deno')
  if (!existsSync(binary)) {
    throw new Error(`The deno binary is missing at ${binary}: run pnpm install (its postinstall)`)
  }
  return binary
}

/** A line the server printed. */
export type ServerLine = Record<string, unknown>

/** A running Deno server. */
export interface DenoProcess {
  readonly port: number
  readonly url: string
  /** The same app on a second server of the process: a second hub. */
  readonly sibling: string
  /** The same app on a server whose Deno `idleTimeout` is 1 s. */
  readonly idle: string
  readonly child: ChildProcess
  /** Every JSON line printed so far. */
  readonly lines: ServerLine[]
  /** Every line printed on stdout so far, JSON or not. */
  readonly output: string[]
  /** Resolves with the first line (past or future) that matches, or rejects after `timeoutMs`. */
  waitFor(match: (line: ServerLine) => boolean, timeoutMs?: number): Promise<ServerLine>
  /** Resolves with the exit code once the process has exited. */
  readonly exited: Promise<number | null>
  /** Kills the process (if still running) and waits for it to exit. */
  stop(): Promise<void>
  /** The suite's commands to the server, on its stdin: its shutdown, its reports. */
  readonly control: ChildControl
}

/** Starts Deno on `test/server.ts` and resolves once it listens. */
export async function startDeno(args: string[] = []): Promise<DenoProcess> {
  const child = spawn(
    denoBinary(),
    ['run', '--no-prompt', '--allow-net=127.0.0.1', join(here, 'server.ts'), ...args],
    {
      cwd: join(here, '..'),
      env: { ...process.env, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  )
  const lines: ServerLine[] = []
  const output: string[] = []
  const listeners = new Set<(line: ServerLine) => void>()
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const control = new ChildControl((line) => child.stdin?.write(line))
  createInterface({ input: child.stdout! }).on('line', (text) => {
    output.push(text)
    control.receive(text)
    let line: ServerLine
    try {
      line = JSON.parse(text) as ServerLine
    } catch {
      return
    }
    lines.push(line)
    for (const listener of listeners) listener(line)
  })
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => resolve(code))
  })

  const waitFor = (match: (line: ServerLine) => boolean, timeoutMs = 10_000) => {
    const found = lines.find(match)
    if (found) return Promise.resolve(found)
    return new Promise<ServerLine>((resolve, reject) => {
      const listener = (line: ServerLine) => {
        if (!match(line)) return
        clearTimeout(timer)
        listeners.delete(listener)
        resolve(line)
      }
      const timer = setTimeout(() => {
        listeners.delete(listener)
        reject(new Error(`Deno printed no matching line in ${timeoutMs} ms. stderr: ${stderr}`))
      }, timeoutMs)
      listeners.add(listener)
    })
  }

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  }

  try {
    const listening = await Promise.race([
      // A cold start compiles the TypeScript first: leave room on a busy machine.
      waitFor((line) => typeof line.listening === 'number', 45_000),
      exited.then((code) => {
        throw new Error(`Deno exited with ${code} before listening. stderr: ${stderr}`)
      }),
    ])
    const port = listening.listening as number
    return {
      port,
      url: `http://127.0.0.1:${port}`,
      sibling: `http://127.0.0.1:${listening.sibling}`,
      idle: `http://127.0.0.1:${listening.idle}`,
      child,
      lines,
      output,
      waitFor,
      exited,
      stop,
      control,
    }
  } catch (err) {
    await stop()
    throw err
  }
}
