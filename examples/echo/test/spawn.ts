/**
 * Test helpers shared by the examples' runtime tests (the chat imports this file too): start an
 * example's package script the way `pnpm <script>` would, with the example's own Bun, Deno,
 * wrangler or tsx, on a free port of 127.0.0.1, and stop it with every process it started.
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { delimiter, join } from 'node:path'
import WebSocket from 'ws'

/** One runtime an example runs on, and the package script that starts it there. */
export interface Runtime {
  /** The runtime's name, used as the name of its `describe` block. */
  readonly name: 'node' | 'bun' | 'deno' | 'workers'
  /** The package script that starts the example on this runtime. */
  readonly script: string
}

/** A started example: its address, its output so far, and how to stop it. */
export interface Server {
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  readonly httpUrl: string
  /** `ws://127.0.0.1:<port>`, without a trailing slash. */
  readonly wsUrl: string
  /** Everything the processes printed so far, stdout and stderr interleaved. */
  output(): string
  /** Stops the whole process group (SIGTERM, then SIGKILL) and waits until none of it is left. */
  stop(): Promise<void>
}

// Offline and quiet: no telemetry, no update checks, no colour codes in the output we read.
const QUIET_ENV = {
  WRANGLER_SEND_METRICS: 'false',
  WRANGLER_SEND_ERROR_REPORTS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  DENO_NO_UPDATE_CHECK: '1',
  NO_COLOR: '1',
  FORCE_COLOR: '0',
}

/** How long a runtime may take to answer its first request; wrangler takes several seconds. */
export const START_TIMEOUT_MS = 60_000
/** How long a stop may take: a graceful shutdown, then SIGKILL, then the group's exit. */
export const STOP_TIMEOUT_MS = 25_000
const KILL_AFTER_MS = 10_000

/** A port of 127.0.0.1 that was free a moment ago (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new Error('No port')),
      )
    })
  })
}

/**
 * The command line of `script` in the example's package.json, as `pnpm <script>` runs it, minus
 * `--watch`: a test has no files to watch, and the watcher would only add a process to stop.
 * Throws when the program is not one of the example's own `node_modules/.bin`, so a test never
 * runs a global binary by accident.
 */
export function scriptCommand(exampleDir: string, script: string): string {
  const pkg = JSON.parse(readFileSync(join(exampleDir, 'package.json'), 'utf8')) as {
    scripts?: Record<string, string>
  }
  const command = pkg.scripts?.[script]
  if (command === undefined) throw new Error(`No script "${script}" in ${exampleDir}`)
  const withoutWatch = command.replace(/\s--watch(?=\s|$)/g, '')
  // Skip the leading `NAME=value` assignments to find the program itself.
  const program = withoutWatch.split(/\s+/).find((word) => !/^\w+=/.test(word))
  if (program === undefined || !existsSync(join(exampleDir, 'node_modules', '.bin', program))) {
    throw new Error(`"${script}" runs ${program}, which is not in the example's node_modules/.bin`)
  }
  return withoutWatch
}

/**
 * Starts `script` of the example in `exampleDir` with `PORT` set to a free port, in a process
 * group of its own, and resolves once `GET /` answers 200 (for wrangler the port opens before the
 * Worker is loaded, so the port alone is not enough).
 */
export async function startScript(exampleDir: string, script: string): Promise<Server> {
  const command = scriptCommand(exampleDir, script)
  const port = await freePort()
  const binDir = join(exampleDir, 'node_modules', '.bin')
  // `sh -c`, as pnpm runs scripts, so `${PORT:-8787}` and the inline env assignments work.
  // `detached` makes the shell a process group leader: stopping kills wrangler's workerd and
  // tsx's node child with it.
  const child = spawn('sh', ['-c', command], {
    cwd: exampleDir,
    detached: true,
    env: {
      ...process.env,
      ...QUIET_ENV,
      PATH: `${binDir}${delimiter}${process.env.PATH ?? ''}`,
      PORT: String(port),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const append = (chunk: Buffer) => {
    output += chunk.toString()
  }
  child.stdout?.on('data', append)
  child.stderr?.on('data', append)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  // Should the test process end without its afterAll (a crash, a timeout), take the group along.
  const group = child.pid
  const killOnExit = () => {
    if (group !== undefined) signalGroup(group, 'SIGKILL')
  }
  process.once('exit', killOnExit)
  const server: Server = {
    port,
    httpUrl: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    output: () => output,
    stop: async () => {
      await stopGroup(child, exited, () => output)
      process.off('exit', killOnExit)
    },
  }
  try {
    await waitForHttp(server.httpUrl, exited, () => output)
  } catch (err) {
    await server.stop()
    throw err
  }
  return server
}

async function waitForHttp(url: string, exited: Promise<void>, output: () => string) {
  let hasExited = false
  void exited.then(() => {
    hasExited = true
  })
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (hasExited) throw new Error(`The server exited before answering:\n${output()}`)
    try {
      const response = await fetch(`${url}/`, { signal: AbortSignal.timeout(5_000) })
      await response.arrayBuffer()
      if (response.ok) return
    } catch {
      // Not listening yet.
    }
    await sleep(200)
  }
  throw new Error(`No answer from ${url} within ${START_TIMEOUT_MS} ms:\n${output()}`)
}

async function stopGroup(child: ChildProcess, exited: Promise<void>, output: () => string) {
  const group = child.pid
  if (group === undefined) return
  signalGroup(group, 'SIGTERM')
  const deadline = Date.now() + KILL_AFTER_MS
  while (groupAlive(group) && Date.now() < deadline) await sleep(100)
  if (groupAlive(group)) {
    signalGroup(group, 'SIGKILL')
    const killDeadline = Date.now() + 5_000
    while (groupAlive(group) && Date.now() < killDeadline) await sleep(100)
    if (groupAlive(group)) throw new Error(`Process group ${group} survived SIGKILL:\n${output()}`)
  }
  await exited
}

function signalGroup(group: number, signal: NodeJS.Signals) {
  // -0 would be our own group: never signal it.
  if (group <= 0) return
  try {
    process.kill(-group, signal)
  } catch {
    // Already gone.
  }
}

function groupAlive(group: number): boolean {
  if (group <= 0) return false
  // Orphans of the group (workerd, once wrangler is gone) are reaped by init, late or, in a
  // container whose init does not reap, never; a zombie has exited, so it does not count.
  if (existsSync('/proc/self/stat')) return livingMembers(group) > 0
  try {
    process.kill(-group, 0)
    return true
  } catch {
    return false
  }
}

/** How many processes of the group are still running, from Linux's /proc (zombies excluded). */
function livingMembers(group: number): number {
  let count = 0
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // exited while we looked
    }
    // Fields after the command name (which may hold spaces, hence the last ')'): state, ppid, pgrp.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(pgrp) === group && state !== 'Z') count++
  }
  return count
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** A message a {@link Client} received: text as a string, binary as its exact bytes. */
export type Received = { binary: false; data: string } | { binary: true; data: Buffer }

/** A `ws` client that queues what it receives, so a test awaits messages one at a time. */
export interface Client {
  /** The underlying socket. */
  readonly ws: WebSocket
  /** The next message, in order; rejects after `timeoutMs` or when the connection ends first. */
  next(timeoutMs?: number): Promise<Received>
  /** The next message parsed as JSON (it must be text). */
  nextJson(timeoutMs?: number): Promise<unknown>
  /** Resolves with the close code and reason once the connection is closed. */
  readonly closed: Promise<{ code: number; reason: string }>
}

/** Opens a `ws` client to `url` and resolves once it is open. */
export async function connect(url: string): Promise<Client> {
  const ws = new WebSocket(url)
  const queue: Received[] = []
  const waiters: Array<(message: Received | undefined) => void> = []
  let ended = false
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    const message: Received = isBinary
      ? { binary: true, data }
      : { binary: false, data: data.toString() }
    const waiter = waiters.shift()
    if (waiter) waiter(message)
    else queue.push(message)
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => {
      ended = true
      for (const waiter of waiters.splice(0)) waiter(undefined)
      resolve({ code, reason: reason.toString() })
    })
  })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  // Later errors (a reset while a test closes) end in 'close' as well; the test reads that.
  ws.on('error', () => {})

  const next = (timeoutMs = 10_000) => {
    const queued = queue.shift()
    if (queued) return Promise.resolve(queued)
    if (ended) return Promise.reject(new Error('The connection ended'))
    return new Promise<Received>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(settle), 1)
        reject(new Error(`No message within ${timeoutMs} ms`))
      }, timeoutMs)
      const settle = (message: Received | undefined) => {
        clearTimeout(timer)
        if (message) resolve(message)
        else reject(new Error('The connection ended before a message'))
      }
      waiters.push(settle)
    })
  }
  const nextJson = async (timeoutMs?: number) => {
    const message = await next(timeoutMs)
    if (message.binary) throw new Error('Expected a text message, got binary')
    return JSON.parse(message.data) as unknown
  }
  return { ws, next, nextJson, closed }
}

/** Waits for `promise`, failing after `timeoutMs` with `what` in the message. */
export function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what}: nothing within ${timeoutMs} ms`)),
        timeoutMs,
      )
    }),
  ]).finally(() => clearTimeout(timer))
}
