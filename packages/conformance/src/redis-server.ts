/**
 * A real `redis-server` for the tests: started on a free port of 127.0.0.1 with nothing saved
 * to disk, stopped by its PID, and restartable on the same port.
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A running (or stopped, restartable) redis-server. */
export interface RedisServer {
  readonly port: number
  readonly url: string
  /** The PID of the current process. */
  readonly pid: number | undefined
  /** What the current process logged. */
  output(): string
  /** Sends one command over a fresh connection and returns Redis's parsed answer. */
  command(...args: string[]): Promise<RespValue>
  /** Kills the process with SIGKILL: no shutdown, connections reset. */
  kill(): Promise<void>
  /** Starts a new process on the same port. */
  restart(): Promise<void>
  /** Stops the process for good. */
  stop(): Promise<void>
}

/** A port the OS says is free now. */
export async function freePort(): Promise<number> {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

/** Encodes a command in RESP. */
function resp(args: string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`
}

/** A RESP answer, parsed: a string, a number, null, an array, or an error. */
export type RespValue = string | number | null | RespValue[] | Error

/** Parses one RESP value at `at`; undefined while it is incomplete. */
function parseResp(text: string, at: number): [RespValue, number] | undefined {
  const lineEnd = text.indexOf('\r\n', at)
  if (lineEnd < 0) return undefined
  const head = text[at]
  const line = text.slice(at + 1, lineEnd)
  const next = lineEnd + 2
  switch (head) {
    case '+':
      return [line, next]
    case '-':
      return [new Error(line), next]
    case ':':
      return [Number(line), next]
    case '$': {
      const length = Number(line)
      if (length < 0) return [null, next]
      if (text.length < next + length + 2) return undefined
      return [text.slice(next, next + length), next + length + 2]
    }
    case '*': {
      const count = Number(line)
      if (count < 0) return [null, next]
      const items: RespValue[] = []
      let position = next
      for (let i = 0; i < count; i++) {
        const item = parseResp(text, position)
        if (!item) return undefined
        items.push(item[0])
        position = item[1]
      }
      return [items, position]
    }
    default:
      throw new Error(`Unexpected RESP answer: ${JSON.stringify(text)}`)
  }
}

/** Sends one command on a new connection and resolves with Redis's parsed answer. */
export function rawCommand(port: number, args: string[], timeoutMs = 5000): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    // Latin-1 keeps one character per byte, so that bulk lengths count characters.
    let answer = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`redis-server did not answer ${args[0]} in ${timeoutMs} ms`))
    }, timeoutMs)
    socket.setEncoding('latin1')
    socket.on('connect', () => socket.write(resp(args)))
    socket.on('data', (chunk: string) => {
      answer += chunk
      const parsed = parseResp(answer, 0)
      if (!parsed) return
      clearTimeout(timer)
      socket.end()
      resolve(parsed[0])
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

async function waitUntilAccepting(
  port: number,
  child: ChildProcess,
  output: () => string,
  failed: () => Error | undefined,
) {
  const deadline = Date.now() + 10_000
  for (;;) {
    const error = failed()
    if (error) throw error
    if (child.exitCode !== null) {
      throw new Error(`redis-server exited with ${child.exitCode}:\n${output()}`)
    }
    try {
      if ((await rawCommand(port, ['PING'], 1000)) === 'PONG') return
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`redis-server did not start:\n${output()}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** How a test's redis-server keeps its data. */
export interface RedisOptions {
  /**
   * `'none'` (the default): `--save '' --appendonly no`, nothing on disk. `'aof'`:
   * `--appendonly yes --appendfsync always`, every write on disk before Redis answers, so a
   * SIGKILL loses nothing. `'snapshot'`: no automatic save; `SAVE` writes an RDB snapshot, which
   * a restart loads (older than what was written after it).
   */
  persistence?: 'none' | 'aof' | 'snapshot'
}

/**
 * Starts `redis-server --port N --save '' --appendonly no` (see {@link RedisOptions}) on a free
 * port, with its files in a temporary directory removed by `stop()`.
 */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'handshake-redis-'))
  const persistence =
    options.persistence === 'aof'
      ? ['--appendonly', 'yes', '--appendfsync', 'always']
      : ['--appendonly', 'no']
  let child: ChildProcess | undefined
  let output = ''
  const launch = async () => {
    output = ''
    const started = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...persistence],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    child = started
    let missing: Error | undefined
    started.once('error', (err: NodeJS.ErrnoException) => {
      missing =
        err.code === 'ENOENT'
          ? new Error(
              "redis-server is not installed: install Debian's redis-server (apt-get install -y redis-server; `bash .ci/run` does it when it is missing)",
            )
          : err
    })
    started.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk
    })
    started.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk
    })
    await waitUntilAccepting(
      port,
      started,
      () => output,
      () => missing,
    )
  }
  const kill = async () => {
    const current = child
    if (!current || current.exitCode !== null || current.signalCode !== null) return
    const exited = once(current, 'exit')
    process.kill(current.pid!, 'SIGKILL')
    await exited
  }
  await launch()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child?.pid
    },
    output: () => output,
    command: (...args) => rawCommand(port, args),
    kill,
    restart: launch,
    async stop() {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
