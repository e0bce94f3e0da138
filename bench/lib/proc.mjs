/**
 * Processes: starting a server entry and learning its port, the process tree it spawned,
 * reading its memory from /proc, and stopping it.
 */
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The pids of `pid`'s descendants, from the parent links in /proc. */
export function descendants(pid) {
  const children = new Map()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let stat
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8')
    } catch {
      continue // the process ended while we looked
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (!children.has(ppid)) children.set(ppid, [])
    children.get(ppid).push(Number(name))
  }
  const out = []
  const walk = (p) => {
    for (const child of children.get(p) ?? []) {
      out.push(child)
      walk(child)
    }
  }
  walk(pid)
  return out
}

/** Resident memory of a process, in bytes (0 once it is gone). */
export function rssOf(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = /VmRSS:\s+(\d+)/.exec(status)
    return kb ? Number(kb[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/**
 * Starts a server and waits for the `{"port":N}` line it prints.
 * @returns {Promise<{proc, port, pids: () => number[], rss: () => number, stderr: () => string}>}
 */
export async function startServer({ command, args, cwd, env, timeoutMs = 20_000 }) {
  const proc = spawn(command, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  proc.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000)
  })
  const port = await new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`no port within ${timeoutMs} ms`)), timeoutMs)
    proc.stdout.on('data', (chunk) => {
      out += chunk
      const line = out.split('\n').find((l) => l.startsWith('{"port"'))
      if (line) {
        clearTimeout(timer)
        resolve(JSON.parse(line).port)
      }
    })
    proc.on('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`exited (${signal ?? code}) before listening`))
    })
    proc.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  }).catch(async (err) => {
    await stopServer({ proc })
    const tail = stderr.trim().split('\n').slice(-3).join(' | ')
    throw new Error(`${err.message}${tail ? `: ${tail}` : ''}`)
  })
  // The tree is read once: runtimes that spawn (Miniflare's workerd) do so before listening.
  const tree = [proc.pid, ...descendants(proc.pid)]
  return {
    proc,
    port,
    pids: () => tree,
    rss: () => tree.reduce((sum, pid) => sum + rssOf(pid), 0),
    stderr: () => stderr,
  }
}

/** Stops a server: SIGTERM, then SIGKILL after a grace period, and the same for its children. */
export async function stopServer(server) {
  const { proc } = server
  const tree = server.pids ? server.pids().slice(1) : descendants(proc.pid)
  if (proc.exitCode === null && proc.signalCode === null) {
    const exited = new Promise((resolve) => proc.once('exit', resolve))
    proc.kill('SIGTERM')
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3000)
    await exited
    clearTimeout(timer)
  }
  for (const pid of tree) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone, as it should be
    }
  }
}

/** GETs a URL on 127.0.0.1 and parses the JSON answer. */
export async function getJson(port, path) {
  const res = await fetch(`http://127.0.0.1:${port}${path}`)
  return res.json()
}
