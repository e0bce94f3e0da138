/**
 * Where a server's CPU time goes under one workload: `pnpm bench:cpu`.
 *
 * For each runtime (Node, Deno) and server it starts the bench's entry with the inspector on a
 * free port, warms it up with the workload, then records a sampling CPU profile over the
 * DevTools protocol while the C load generator runs the workload again, and sums self time by
 * where the code lives and by function, per connection (churn) or per message (echo).
 *
 * With --v8-prof it also runs each server under V8's own tick profiler (`node --prof`,
 * `deno run --v8-flags=--prof`) and keeps `node --prof-process`'s text next to the profile: its
 * summary splits JavaScript, the runtime's native code (a shared library; Deno's binary is
 * stripped, so its Rust and C++ show as one line) and the garbage collector.
 *
 * Options: --runtimes node,deno  --kinds raw,hono,crossws,handshake  --workload churn|small|latency
 *          --seconds 4  --interval 100 (sampling interval, µs)  --v8-prof  --top 20
 *          --entry kind=path (another entry for a kind, relative to bench/)
 * Writes bench/results/cpu/<runtime>-<workload>.md, the .cpuprofile files (open them in DevTools)
 * and, with --v8-prof, the --prof-process texts.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connectInspector, inspectorUrl } from './lib/inspector.mjs'
import { buildLoadgen, runLoad } from './lib/loadgen.mjs'
import { sleep, startServer, stopServer } from './lib/proc.mjs'
import { summarize } from './lib/profile.mjs'
import { benchDir, KINDS, rootDir, runtimes, serverName } from './lib/runtimes.mjs'

const argv = process.argv.slice(2)
const option = (name) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}
const options = (name) => argv.flatMap((a, i) => (a === `--${name}` ? [argv[i + 1]] : []))
const workload = option('workload') ?? 'churn'
const seconds = Number(option('seconds') ?? 4)
const interval = Number(option('interval') ?? 100)
const top = Number(option('top') ?? 20)
const v8prof = argv.includes('--v8-prof')
const wanted = (option('runtimes') ?? 'node,deno').split(',')
const kinds = (option('kinds') ?? KINDS.join(',')).split(',')
const extraEntries = Object.fromEntries(options('entry').map((e) => e.split('=')))
const outDir = join(benchDir, 'results', 'cpu')
const log = (...args) => console.error('[cpu]', ...args)

/** The loadgen options of each workload (the same as the bench's, plus one message in flight). */
function load(durationMs) {
  const base = { 'warmup-ms': 0, 'duration-ms': durationMs }
  if (workload === 'small') return ['echo', { ...base, conns: 64, window: 16, size: 32 }]
  if (workload === 'latency') return ['latency', { ...base, size: 32 }]
  if (workload === 'churn') return ['churn', { ...base, conns: 16, size: 32 }]
  throw new Error(`unknown workload ${workload}`)
}
const unitName = workload === 'churn' ? 'conn' : 'msg'
const unitsOf = (result) => (workload === 'churn' ? result.conns_per_s : result.msgs_per_s)

/** The command line of one entry, with extra runtime flags before the entry. */
function commandFor(rt, kind, flags) {
  const entry = extraEntries[kind] ?? rt.entry(kind)
  const [command, args] = rt.command(entry)
  return [command, [...args.slice(0, -1), ...flags, entry]]
}

async function sampled(rt, kind) {
  const [command, args] = commandFor(rt, kind, ['--inspect=127.0.0.1:0'])
  const server = await startServer({ command, args, cwd: benchDir, env: rt.env })
  try {
    let url
    for (let i = 0; i < 50 && !url; i++) {
      url = inspectorUrl(server.stderr())
      if (!url) await sleep(100)
    }
    if (!url) throw new Error('no inspector URL on stderr')
    const inspector = await connectInspector(url)
    try {
      const [mode, warm] = load(1000)
      await runLoad(mode, server.port, server.pids(), warm)
      await inspector.call('Profiler.enable')
      await inspector.call('Profiler.setSamplingInterval', { interval })
      await inspector.call('Profiler.start')
      const [, measured] = load(seconds * 1000)
      const result = await runLoad(mode, server.port, server.pids(), measured)
      const { profile } = await inspector.call('Profiler.stop')
      const file = join(outDir, `${rt.id}-${workload}-${kind}.cpuprofile`)
      writeFileSync(file, JSON.stringify(profile))
      const profiledS = (profile.endTime - profile.startTime) / 1e6
      const units = unitsOf(result) * Math.min(profiledS, seconds)
      return { kind, result, ...summarize(profile, units, top) }
    } finally {
      inspector.close()
    }
  } finally {
    await stopServer(server)
  }
}

/** Runs the entry under V8's tick profiler and returns `node --prof-process`'s text. */
async function ticks(rt, kind) {
  const dir = join(outDir, 'v8log', `${rt.id}-${kind}`)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const logfile = join(dir, 'v8.log')
  const flags =
    rt.id === 'deno'
      ? [`--v8-flags=--prof,--no-logfile-per-isolate,--logfile=${logfile}`]
      : ['--prof', '--no-logfile-per-isolate', `--logfile=${logfile}`]
  const [command, args] = commandFor(rt, kind, flags)
  const server = await startServer({ command, args, cwd: benchDir, env: rt.env })
  let result
  try {
    const [mode, measured] = load(seconds * 1000)
    await runLoad(mode, server.port, server.pids(), load(1000)[1])
    result = await runLoad(mode, server.port, server.pids(), measured)
  } finally {
    // SIGINT lets both runtimes exit through their normal path, which flushes the log.
    server.proc.kill('SIGINT')
    await sleep(500)
    await stopServer(server)
  }
  if (!existsSync(logfile)) throw new Error('no V8 log written')
  const text = execFileSync(process.execPath, ['--prof-process', logfile], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  writeFileSync(join(outDir, `${rt.id}-${workload}-${kind}.prof.txt`), text)
  return { text, result }
}

/** The lines of one bracketed section of --prof-process's output. */
function section(text, name, lines) {
  const start = text.indexOf(` [${name}]:`)
  if (start < 0) return []
  return text
    .slice(start)
    .split('\n')
    .slice(1, lines + 2)
    .filter((l) => l.trim() && !l.startsWith(' ['))
}

const fmt = (x, digits = 1) => (x === undefined ? '–' : x.toFixed(digits))

function render(rt, profiles, tickTexts) {
  const lines = [
    `## ${rt.name}: CPU profile under ${workload}`,
    '',
    `Sampling profile (DevTools protocol, ${interval} µs) of ${seconds} s of the workload after 1 s of warm-up. Per ${unitName}: self time divided by the ${unitName}s served while profiled.`,
    '',
    `| server | ${unitName}/s while profiled | server CPU µs/${unitName} (from /proc) | profiled busy µs/${unitName} |`,
    '| --- | --- | --- | --- |',
    ...profiles.map(
      (p) =>
        `| ${serverName(rt, p.kind)} | ${Math.round(unitsOf(p.result)).toLocaleString('en-US')} | ${fmt(p.result.server_cpu_us_per_unit)} | ${fmt(p.busyUs / p.messages)} |`,
    ),
    '',
  ]
  const cats = [...new Set(profiles.flatMap((p) => Object.keys(p.categories)))]
  const per = (p, cat) => (p.categories[cat] ?? 0) / p.messages
  cats.sort(
    (a, b) =>
      Math.max(...profiles.map((p) => per(p, b))) - Math.max(...profiles.map((p) => per(p, a))),
  )
  lines.push(
    `Self time by where the code lives, µs per ${unitName}:`,
    '',
    `| where | ${profiles.map((p) => p.kind).join(' | ')} |`,
    `| --- | ${profiles.map(() => '---').join(' | ')} |`,
    ...cats
      .filter((cat) => profiles.some((p) => per(p, cat) >= 0.2))
      .map((cat) => `| ${cat} | ${profiles.map((p) => fmt(per(p, cat))).join(' | ')} |`),
    '',
  )
  for (const p of profiles) {
    lines.push(
      `Top functions by self time, ${p.kind}:`,
      '',
      `| function | where | self | µs/${unitName} |`,
      '| --- | --- | --- | --- |',
      ...p.top.map(
        (f) =>
          `| \`${f.name}\` | ${f.where} | ${((f.selfUs / p.busyUs) * 100).toFixed(1)}% | ${fmt(f.selfUs / p.messages, 2)} |`,
      ),
      '',
    )
  }
  for (const [kind, text] of Object.entries(tickTexts)) {
    lines.push(
      `\`--prof\` ticks, ${kind} (\`node --prof-process\`; summary, then the heaviest JavaScript and native entries):`,
      '',
      '```',
      ...section(text, 'Summary', 8),
      '',
      ...section(text, 'JavaScript', 12),
      '',
      ...section(text, 'C++', 6),
      ...section(text, 'Shared libraries', 6),
      '```',
      '',
    )
  }
  return lines.join('\n').split(rootDir).join('.')
}

async function main() {
  buildLoadgen()
  mkdirSync(outDir, { recursive: true })
  for (const rt of runtimes().filter((r) => wanted.includes(r.id))) {
    if (rt.missing || !['node', 'deno'].includes(rt.id)) {
      log(rt.name, 'skipped:', rt.missing ?? 'profiles are for Node and Deno')
      continue
    }
    const profiles = []
    const tickTexts = {}
    for (const kind of kinds) {
      log(`${rt.name} ${kind}: ${workload}, ${seconds} s`)
      try {
        profiles.push(await sampled(rt, kind))
        if (v8prof) tickTexts[kind] = (await ticks(rt, kind)).text
      } catch (err) {
        log(`${rt.name} ${kind} failed:`, err.message)
      }
    }
    const report = render(rt, profiles, tickTexts)
    writeFileSync(join(outDir, `${rt.id}-${workload}.md`), `${report}\n`)
    process.stdout.write(`${report}\n`)
  }
  rmSync(join(outDir, 'v8log'), { recursive: true, force: true })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
