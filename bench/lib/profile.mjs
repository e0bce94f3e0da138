/**
 * Profiles the raw server and Handshake with `--cpu-prof` (Node and Bun both write Chrome's
 * .cpuprofile format) under the small-message echo, and sums self time by where the code lives.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { runLoad } from './loadgen.mjs'
import { startServer, stopServer } from './proc.mjs'
import { benchDir, rootDir } from './runtimes.mjs'

/** Where a function lives, from its script URL. */
export function category(url, name) {
  if (!url) {
    if (name === '(garbage collector)') return 'GC'
    if (name === '(program)') return 'V8 and native (program)'
    return `native: ${name}`
  }
  if (url.includes('/packages/core/') || url.includes('@handshake/core')) return 'Handshake core'
  if (/\/packages\/adapter-|@handshake\/(node|bun|deno|workers)/.test(url))
    return 'Handshake adapter'
  if (url.includes('/ws/lib/')) return 'ws'
  if (url.includes('@hono/node-server')) return '@hono/node-server'
  if (url.includes('/hono/')) return 'hono'
  if (url.includes('/crossws/')) return 'crossws'
  if (url.startsWith('node:')) return 'Node internals'
  if (url.startsWith('ext:')) return `Deno internals (${url.slice(4).split('/')[0]})`
  if (url.includes('/bench/servers/')) return 'bench entry'
  return 'other'
}

export function summarize(profile, messages, topCount = 12) {
  const { nodes, samples, timeDeltas } = profile
  const byId = new Map(nodes.map((n) => [n.id, n]))
  const selfUs = new Map()
  for (let i = 0; i < samples.length; i++) {
    selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + (timeDeltas[i] ?? 0))
  }
  const categories = {}
  const functions = new Map()
  let busyUs = 0
  for (const [id, us] of selfUs) {
    const node = byId.get(id)
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(idle)') continue
    busyUs += us
    const cat = category(url, functionName)
    categories[cat] = (categories[cat] ?? 0) + us
    // Paths relative to the repository (or to node_modules), never this machine's.
    const short = url
      ? url
          .replace(/^file:\/\//, '')
          .replace(/^.*\/node_modules\//, '')
          .replace(`${rootDir}/`, '')
      : ''
    const key = `${functionName || '(anonymous)'}@${short}:${lineNumber + 1}`
    const f = functions.get(key) ?? {
      name: functionName || '(anonymous)',
      where: short ? `${short}:${lineNumber + 1}` : cat,
      selfUs: 0,
    }
    f.selfUs += us
    functions.set(key, f)
  }
  const top = [...functions.values()].sort((a, b) => b.selfUs - a.selfUs).slice(0, topCount)
  return { categories, busyUs, top, messages }
}

/** The command line that profiles one server entry into `out`. */
function profiledCommand(rt, kind, out) {
  const [command, args] = rt.command(rt.entry(kind))
  const entry = args[args.length - 1]
  const flags =
    rt.id === 'node'
      ? ['--expose-gc', '--cpu-prof', '--cpu-prof-dir', out]
      : ['--cpu-prof', `--cpu-prof-dir=${out}`]
  return { command, args: [...flags, entry] }
}

/** Profiles the raw server and Handshake of a runtime (Node or Bun); returns what the report shows. */
export async function profileRuntime(rt, options, dir) {
  const durationMs = 3000
  const servers = []
  for (const kind of ['raw', 'handshake']) {
    const out = join(dir, rt.id, kind)
    rmSync(out, { recursive: true, force: true })
    mkdirSync(out, { recursive: true })
    const server = await startServer({ ...profiledCommand(rt, kind, out), cwd: benchDir })
    let result
    try {
      result = await runLoad('echo', server.port, server.pids(), {
        ...options,
        'duration-ms': durationMs,
      })
    } finally {
      await stopServer(server)
    }
    const file = readdirSync(out).find((f) => f.endsWith('.cpuprofile'))
    if (!file) continue
    const profile = JSON.parse(readFileSync(join(out, file), 'utf8'))
    // The profile covers the whole process; loadgen's count covers its window, so scale the
    // messages to the profile's length for a per-message figure.
    const profiledS = (profile.endTime - profile.startTime) / 1e6
    const messages =
      result.msgs_per_s * Math.min(profiledS, (durationMs + options['warmup-ms']) / 1000)
    servers.push({ kind, msgsPerS: result.msgs_per_s, ...summarize(profile, messages) })
  }
  return { runtime: rt.name, durationMs, servers }
}
