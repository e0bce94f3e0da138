/** The C load generator: building it with the machine's compiler, and running its workloads. */
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const client = join(dirname(fileURLToPath(import.meta.url)), '..', 'client')
export const binary = join(client, 'build', 'loadgen')

/**
 * Compiles a load generator, `client/<name>.c` with the code they share (`client/ws.c`), into
 * `client/build/<name>`, with `cc` (or `gcc`). Returns the compiler's version line.
 */
export function buildClient(name) {
  const out = join(client, 'build', name)
  mkdirSync(dirname(out), { recursive: true })
  const sources = [join(client, `${name}.c`), join(client, 'ws.c')]
  for (const cc of [process.env.CC, 'cc', 'gcc'].filter(Boolean)) {
    try {
      execFileSync(cc, ['-O2', '-Wall', '-o', out, ...sources], { stdio: 'pipe' })
      return execFileSync(cc, ['--version'], { encoding: 'utf8' }).split('\n')[0]
    } catch (err) {
      if (err.code !== 'ENOENT') throw new Error(`${cc} failed: ${err.stderr ?? err.message}`)
    }
  }
  throw new Error('No C compiler: the benchmarks need cc or gcc (apt-get install gcc)')
}

/** Compiles loadgen (see {@link buildClient}). Returns the compiler's version line. */
export const buildLoadgen = () => buildClient('loadgen')

function args(options) {
  const out = []
  for (const [key, value] of Object.entries(options)) {
    if (value === false || value === undefined) continue
    out.push(`--${key}`)
    if (value !== true) out.push(String(value))
  }
  return out
}

/**
 * Runs an `echo` or `churn` workload against a port and returns loadgen's JSON result.
 * `pids` are the server's processes, whose CPU time loadgen reads over the measured window.
 */
export function runLoad(mode, port, pids, options) {
  const timeoutMs = (options['warmup-ms'] ?? 500) + (options['duration-ms'] ?? 2000) + 20_000
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [mode, ...args({ port, pids: pids.join(','), ...options })], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
    })
    child.stderr.on('data', (chunk) => {
      err += chunk
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', () => {
      clearTimeout(timer)
      const line = out.trim().split('\n').pop() ?? ''
      try {
        const result = JSON.parse(line)
        if (result.error) reject(new Error(result.error))
        else resolve(result)
      } catch {
        reject(new Error(`loadgen gave no result: ${(err || out).trim().slice(0, 300)}`))
      }
    })
  })
}

/**
 * Opens `conns` idle connections and resolves once they are all open, with a `close()` that
 * closes them and resolves with loadgen's final line.
 */
export function openIdle(port, conns) {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ['idle', ...args({ port, conns, concurrency: 200 })], {
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let out = ''
    let ready = false
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${conns} connections did not open within 90 s`))
    }, 90_000)
    const exited = new Promise((done) => child.on('exit', done))
    child.stdout.on('data', (chunk) => {
      out += chunk
      // Only whole lines: the last piece may still be arriving.
      const lines = out
        .split('\n')
        .slice(0, -1)
        .filter(Boolean)
        .map((l) => JSON.parse(l))
      const error = lines.find((l) => l.error)
      if (error) {
        clearTimeout(timer)
        reject(new Error(error.error))
        return
      }
      const line = lines.find((l) => l.ready)
      if (line && !ready) {
        ready = true
        clearTimeout(timer)
        resolve({
          ...line,
          close: async () => {
            child.stdin.end('close\n')
            const killer = setTimeout(() => child.kill('SIGKILL'), 15_000)
            await exited
            clearTimeout(killer)
          },
        })
      }
    })
  })
}
