/**
 * The benchmark runner: `pnpm bench` (the whole set, under 10 minutes) or `pnpm bench:quick`
 * (Node only, one short round, under 60 s).
 *
 * For each runtime it starts the raw server, Hono's helper, crossws and Handshake as separate
 * processes on free ports of 127.0.0.1, and drives them with the C load generator, interleaved
 * (every workload visits every server in turn, round after round, in alternating order: A B C D,
 * then D C B A), then takes the median of the rounds and their spread (min–max); a ratio of two
 * servers is taken round by round. Idle memory is measured on a fresh process per round. The
 * channel protocol's workloads run on the event-controller server's `/channels` route, beside
 * its own echo in the same rounds.
 *
 * Options: --quick, --runtimes node,bun,deno,workers, --rounds N (5 by default, 1 with --quick),
 * --idle-rounds N (3 by default), --jit-warmup-ms N (2000 by default, 0 with --quick: an unmeasured
 * pass of the echo, channel and churn workloads over every server before round 1), --profile / --no-profile, --report-only (render BENCHMARKS.md
 * again from the last results.json), --no-build (skip building the Handshake packages first).
 * It is plain JavaScript so that Node 20 runs it with no TypeScript loader.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { renderChart } from './lib/chart.mjs'
import { runFanout } from './lib/fanout.mjs'
import { buildLoadgen, openIdle, runLoad } from './lib/loadgen.mjs'
import { getJson, sleep, startServer, stopServer } from './lib/proc.mjs'
import { profileRuntime } from './lib/profile.mjs'
import { renderReport } from './lib/report.mjs'
import {
  adapterMissing,
  benchDir,
  KINDS,
  rootDir,
  runtimes,
  serverName,
  versionOf,
} from './lib/runtimes.mjs'
import { CHANNEL_WORKLOADS, summarize, WORKLOADS } from './lib/stats.mjs'

// --- options ---

const argv = process.argv.slice(2)
const flag = (name) => argv.includes(`--${name}`)
const option = (name) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}
const quick = flag('quick')

/** Durations and sizes. The full set fits in 10 minutes on 2 cores; the quick one in 60 s. */
const config = quick
  ? {
      rounds: 1,
      idleRounds: 1,
      idleConns: 2000,
      warmupMs: { small: 300, large: 200, churn: 200, latency: 200, fanout: 300 },
      durationMs: { small: 1000, large: 800, churn: 800, latency: 800, fanout: 1000 },
      jitWarmupMs: 0,
    }
  : {
      // Five rounds, so that each figure has a median and a spread worth the name; shorter
      // windows than with three, to stay near the same total time.
      rounds: 5,
      idleRounds: 3,
      warmupMs: { small: 300, large: 200, churn: 200, latency: 200, fanout: 500 },
      durationMs: { small: 1000, large: 700, churn: 700, latency: 1000, fanout: 2000 },
      // Before round 1, each server runs the small echo, the channel workloads and churn once,
      // unmeasured, for this long: a JIT compiles the code of a bigger server for longer (Bun's
      // compiler thread took about 24 µs per connection of Handshake's first 4 s of churn,
      // against 6 for Hono's helper), and a long-running server pays that once, not per round.
      jitWarmupMs: 2000,
    }
config.rounds = Number(option('rounds') ?? config.rounds)
config.jitWarmupMs = Number(option('jit-warmup-ms') ?? config.jitWarmupMs)
config.idleRounds = Math.min(Number(option('idle-rounds') ?? config.idleRounds), config.rounds)

const wanted = (option('runtimes') ?? (quick ? 'node' : 'node,bun,deno,workers')).split(',')
const selected = runtimes().filter((rt) => wanted.includes(rt.id))

const log = (...args) => console.error(`[bench ${((Date.now() - t0) / 1000).toFixed(0)}s]`, ...args)
const t0 = Date.now()

// --- one runtime ---

/** The loadgen options of a workload. */
function loadOptions(workload) {
  const base = {
    'warmup-ms': config.warmupMs[workload],
    'duration-ms': config.durationMs[workload],
  }
  if (workload === 'small') return { ...base, conns: 64, window: 16, size: 32 }
  if (workload === 'large') return { ...base, conns: 8, window: 1, size: 262_144, binary: true }
  // One connection, one message in flight: loadgen's latency mode sets both.
  if (workload === 'latency') return { ...base, size: 32 }
  const channel = CHANNEL_WORKLOADS[workload]
  if (channel) {
    // The events server's channel route, the echo's connections and window, protocol frames.
    return {
      'warmup-ms': config.warmupMs.small,
      'duration-ms': config.durationMs.small,
      conns: 64,
      window: 16,
      path: '/channels',
      protocol: 'handshake.v1',
      text: channel.send,
      'reply-size': Buffer.byteLength(channel.reply),
    }
  }
  return { ...base, conns: 16, size: 32 }
}

function serverOptions(rt, kind) {
  const [command, args] = rt.command(rt.entry(kind))
  return { command, args, cwd: benchDir, env: rt.env, timeoutMs: rt.startTimeoutMs }
}

/** Why a server cannot run, or undefined. */
function unavailable(rt, kind) {
  if (rt.missing) return rt.missing
  if (kind === 'handshake' || kind === 'events') return adapterMissing(rt)
  return undefined
}

async function throughput(rt, rows) {
  const started = {}
  for (const kind of KINDS) {
    if (rows[kind].unavailable) continue
    try {
      started[kind] = await startServer(serverOptions(rt, kind))
    } catch (err) {
      rows[kind].unavailable = `did not start: ${err.message}`
      log(rt.id, kind, rows[kind].unavailable)
    }
  }
  if (config.jitWarmupMs > 0) await jitWarmup(rt, started)
  for (let round = 0; round < config.rounds; round++) {
    // A B C D, then D C B A: drift on a shared machine hits every server alike.
    const forward = round % 2 === 0
    const order = forward ? KINDS : [...KINDS].reverse()
    // The channel workloads sit beside the small echo they are compared with, before it in
    // one round and after it in the next.
    const channels = Object.keys(CHANNEL_WORKLOADS)
    const near = forward ? ['small', ...channels] : [...channels.reverse(), 'small']
    for (const workload of [...near, 'large', 'churn', 'latency']) {
      for (const kind of order) {
        const server = started[kind]
        if (!server) continue
        if (CHANNEL_WORKLOADS[workload] && kind !== 'events') continue
        try {
          const mode = workload === 'churn' || workload === 'latency' ? workload : 'echo'
          const result = await runLoad(mode, server.port, server.pids(), loadOptions(workload))
          rows[kind][workload].push(result)
        } catch (err) {
          const exited = server.proc.exitCode !== null || server.proc.signalCode !== null
          const why = exited ? `server exited: ${server.stderr().trim().slice(-300)}` : err.message
          rows[kind][workload].push({ error: why })
          log(rt.id, kind, workload, 'failed:', why)
        }
      }
      log(rt.id, `round ${round + 1}/${config.rounds}`, workload, 'done')
    }
  }
  for (const server of Object.values(started)) await stopServer(server)
}

/** One unmeasured pass of the per-message and churn workloads over every server, in order. */
async function jitWarmup(rt, started) {
  for (const workload of ['small', ...Object.keys(CHANNEL_WORKLOADS), 'churn']) {
    for (const kind of KINDS) {
      if (!started[kind] || (CHANNEL_WORKLOADS[workload] && kind !== 'events')) continue
      const options = { ...loadOptions(workload), 'warmup-ms': config.jitWarmupMs }
      const mode = workload === 'churn' ? 'churn' : 'echo'
      await runLoad(mode, started[kind].port, started[kind].pids(), options).catch((err) => {
        log(rt.id, kind, workload, 'warm-up failed:', err.message)
      })
    }
  }
  log(rt.id, 'JIT warm-up done')
}

async function memory(rt, server) {
  // /stats runs a full GC first, so the RSS read after it is as settled as it gets.
  const stats = rt.heap ? await getJson(server.port, '/stats') : undefined
  return { rss: server.rss(), heap: stats?.heap }
}

async function idle(rt, rows) {
  const conns = quick ? config.idleConns : rt.idleConns
  for (let round = 0; round < config.idleRounds; round++) {
    const order = round % 2 === 0 ? KINDS : [...KINDS].reverse()
    for (const kind of order) {
      if (rows[kind].unavailable) continue
      let server
      try {
        server = await startServer(serverOptions(rt, kind))
        await sleep(300)
        const before = await memory(rt, server)
        const held = await openIdle(server.port, conns)
        await sleep(500)
        const after = await memory(rt, server)
        await held.close()
        rows[kind].idle.push({
          conns: held.opened,
          openS: held.open_s,
          baseRss: before.rss,
          rssPerConn: (after.rss - before.rss) / held.opened,
          heapPerConn:
            after.heap === undefined ? undefined : (after.heap - before.heap) / held.opened,
        })
      } catch (err) {
        rows[kind].idle.push({ error: err.message })
        log(rt.id, kind, 'idle failed:', err.message)
      } finally {
        if (server) await stopServer(server)
      }
    }
    log(rt.id, `idle round ${round + 1}/${config.idleRounds} done (${conns} connections)`)
  }
}

async function benchRuntime(rt) {
  const rows = {}
  for (const kind of KINDS) {
    rows[kind] = {
      name: serverName(rt, kind),
      unavailable: unavailable(rt, kind),
      small: [],
      large: [],
      churn: [],
      latency: [],
      idle: [],
      ...(kind === 'events'
        ? Object.fromEntries(Object.keys(CHANNEL_WORKLOADS).map((w) => [w, []]))
        : {}),
    }
  }
  if (!rt.missing) {
    await throughput(rt, rows)
    await idle(rt, rows)
  }
  return {
    id: rt.id,
    name: rt.name,
    heap: rt.heap,
    idleConns: quick ? config.idleConns : rt.idleConns,
    rows: Object.fromEntries(KINDS.map((kind) => [kind, summarize(rows[kind])])),
    rounds: rows,
  }
}

// --- the machine and the versions ---

function sh(command, args) {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: 'pipe' }).trim()
  } catch {
    return 'unknown'
  }
}

function machine() {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown'
  return {
    nproc: sh('nproc', []),
    cpu,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()}`,
    loadBefore: os.loadavg(),
  }
}

function versions(compiler) {
  const all = runtimes()
  const bin = (id) => all.find((rt) => rt.id === id).command('x')[0]
  let workerd = 'not installed'
  try {
    const miniflare = realpathSync(join(benchDir, 'node_modules', 'miniflare'))
    workerd = JSON.parse(
      readFileSync(join(miniflare, '..', 'workerd', 'package.json'), 'utf8'),
    ).version
  } catch {
    // miniflare is not installed
  }
  const handshake = JSON.parse(
    readFileSync(join(rootDir, 'packages', 'core', 'package.json'), 'utf8'),
  ).version
  return {
    node: process.version,
    bun: sh(bin('bun'), ['--version']),
    deno: sh(bin('deno'), ['--version']).split('\n')[0],
    workerd: `${workerd} (Miniflare ${versionOf('miniflare')})`,
    hono: versionOf('hono'),
    '@hono/node-server': versionOf('@hono/node-server'),
    ws: versionOf('ws'),
    crossws: versionOf('crossws'),
    handshake,
    compiler,
  }
}

// --- main ---

/**
 * Builds the Handshake packages the servers import (a clean clone has no dist/). A package that
 * fails to build only makes its rows "not available".
 */
function buildPackages() {
  if (flag('no-build')) return
  try {
    execFileSync(
      join(rootDir, 'node_modules', '.bin', 'turbo'),
      ['run', 'build', '--filter=@handshake/bench^...', '--output-logs=errors-only', '--continue'],
      { cwd: benchDir, stdio: 'pipe', env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' } },
    )
  } catch (err) {
    log(
      'building the Handshake packages failed; their rows will say why:',
      String(err.stderr ?? err.message)
        .trim()
        .split('\n')
        .slice(-3)
        .join(' | '),
    )
  }
}

async function main() {
  buildPackages()
  const compiler = buildLoadgen()
  const info = { machine: machine(), versions: versions(compiler) }
  log('load generator built with', compiler)
  const results = []
  for (const rt of selected) {
    log(`${rt.name}: starting`)
    results.push(await benchRuntime(rt))
  }

  // The full run always profiles Node and Bun (about 10 s each): the report says where
  // Handshake's time goes. The quick run only with --profile.
  // The fan-out workload (bench/lib/fanout.mjs): 1,000 subscribers per server, so at most two
  // rounds, and --no-fanout to leave it out.
  const fanout = flag('no-fanout')
    ? undefined
    : await runFanout(
        selected,
        {
          rounds: Math.min(config.rounds, 2),
          warmupMs: config.warmupMs.fanout,
          durationMs: config.durationMs.fanout,
        },
        log,
      )

  const profiles = []
  if (!flag('no-profile') && (flag('profile') || !quick)) {
    for (const rt of selected.filter((r) => ['node', 'bun'].includes(r.id) && !r.missing)) {
      if (unavailable(rt, 'handshake')) continue
      log(`profiling ${rt.name} (raw and Handshake) under small-message echo`)
      try {
        profiles.push(
          await profileRuntime(rt, loadOptions('small'), join(benchDir, 'results', 'profile')),
        )
      } catch (err) {
        log(`profiling ${rt.name} failed:`, err.message)
      }
    }
  }

  const features = flag('no-features') ? undefined : runFeatures()

  info.machine.loadAfter = os.loadavg()
  info.seconds = (Date.now() - t0) / 1000
  info.command = quick ? 'pnpm bench:quick' : 'pnpm bench'
  info.argv = argv
  info.config = config
  info.workloads = WORKLOADS
  info.channelWorkloads = CHANNEL_WORKLOADS
  info.date = new Date().toISOString()

  write(info, results, profiles, fanout, features)
}

/**
 * What the round-3 features cost, priced in the same run: each is a script of bench/micro/ run
 * in its own Node process (its header says what it measures and how), its output kept as
 * printed. The quick run gives the Redis scripts a shorter window. `--no-features` leaves
 * them out; `--features-only` runs them alone and writes the report again with the rest of
 * the last results.json.
 */
function runFeatures() {
  const window = quick ? '10' : '30'
  const scripts = [
    {
      name: 'presence: memory per member, a join and a leave reaching 1,000 subscribers',
      file: 'presence.mjs',
      node: ['--expose-gc'],
    },
    {
      name: 'presence on Redis: commands and memory per member',
      file: 'redis-presence.mjs',
      env: { WINDOW_S: window },
    },
    {
      name: 'history in memory: CPU per publish against a plain publish, and heap per message kept',
      file: 'history.mjs',
      node: ['--expose-gc'],
    },
    {
      name: 'history on Redis Streams: CPU and Redis per message against the plain backplane',
      file: 'redis-history.mjs',
    },
    {
      name: "the channel protocol, client and server in one process (so the client's cost is in it): a request and its response against a raw event echo",
      file: 'channels-request.mjs',
    },
  ]
  return scripts.map(({ name, file, node = [], env = {} }) => {
    const command = `node ${node.join(' ')} bench/micro/${file}`.replace(/ +/g, ' ')
    log(`feature: ${name} (${command})`)
    const started = Date.now()
    const load = os.loadavg()[0]
    const run = spawnSync(process.execPath, [...node, join(benchDir, 'micro', file)], {
      cwd: rootDir,
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 10 * 60_000,
    })
    const output = `${run.stdout ?? ''}`.trimEnd()
    const failed =
      run.status !== 0
        ? `exit ${run.status ?? run.signal}: ${`${run.stderr ?? ''}`.trim().split('\n').slice(-3).join(' / ')}`
        : undefined
    if (failed) log(`feature ${file} failed: ${failed}`)
    return {
      name,
      command: Object.keys(env).length
        ? `${Object.entries(env)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')} ${command}`
        : command,
      seconds: (Date.now() - started) / 1000,
      date: new Date(started).toISOString().slice(0, 16).replace('T', ' '),
      load,
      output,
      failed,
    }
  })
}

/** The features' section of the report. */
function renderFeatures(features) {
  if (!features?.length) return ''
  const parts = [
    '',
    '## What the new features cost',
    '',
    'Each script runs in its own Node process after the workloads above, in the same run; its output is kept as printed. Reproduce one with the command under its name (after `pnpm build`).',
    '',
  ]
  for (const f of features) {
    parts.push(
      `### ${f.name}`,
      '',
      `\`${f.command}\` (${f.seconds.toFixed(0)} s, ${f.date ?? '?'} UTC, load average ${f.load?.toFixed(1) ?? '?'} at its start)`,
      '',
    )
    if (f.failed) parts.push(`Failed: ${f.failed}`, '')
    if (f.output) parts.push('```text', f.output, '```', '')
  }
  return parts.join('\n')
}

/** Writes results.json, the chart and BENCHMARKS.md (bench/results/quick/ for the quick run). */
function write(info, results, profiles, fanout, features) {
  const outDir = join(benchDir, 'results', quick ? 'quick' : '')
  mkdirSync(outDir, { recursive: true })
  let notes = ''
  try {
    notes = readFileSync(join(benchDir, 'notes.md'), 'utf8')
  } catch {
    // no notes
  }
  // No path of this machine goes into files meant to be committed.
  const scrub = (text) => text.split(rootDir).join('.')
  const chartPath = join(outDir, 'chart.svg')
  writeFileSync(chartPath, renderChart(results))
  writeFileSync(
    join(outDir, 'results.json'),
    scrub(`${JSON.stringify({ info, results, profiles, fanout, features }, null, 2)}\n`),
  )
  const report = renderReport({
    info,
    results,
    profiles,
    fanout,
    notes: quick ? '' : notes,
    chart: quick ? 'bench/results/quick/chart.svg' : 'bench/results/chart.svg',
    chartFromReport: quick ? 'chart.svg' : 'bench/results/chart.svg',
  })
  const reportPath = quick ? join(outDir, 'BENCHMARKS.md') : join(rootDir, 'BENCHMARKS.md')
  writeFileSync(reportPath, scrub(report + renderFeatures(features)))
  log(`wrote ${reportPath} and ${chartPath}`)
  process.stdout.write(renderReport.summaryText(results))
}

/** `--report-only`: renders the report again from the last results.json (after editing notes.md). */
function reportOnly() {
  const path = join(benchDir, 'results', quick ? 'quick' : '', 'results.json')
  const { info, results, profiles, fanout, features } = JSON.parse(readFileSync(path, 'utf8'))
  // Results from before a server kind existed: its rows say so instead of breaking the report.
  const all = runtimes()
  for (const rt of results) {
    const runtime = all.find((r) => r.id === rt.id)
    for (const kind of KINDS) {
      rt.rows[kind] ??= {
        name: runtime ? serverName(runtime, kind) : kind,
        unavailable: 'not in the run these results come from',
      }
      // Rows again from the rounds, so that results from an older runner get their spreads.
      const rounds = rt.rounds?.[kind]
      if (rounds && !rt.rows[kind].unavailable) rt.rows[kind] = summarize(rounds)
    }
  }
  write(info, results, profiles ?? [], fanout, features)
}

/** `--features-only`: prices the features again, with the other figures of the last results.json. */
function featuresOnly() {
  const path = join(benchDir, 'results', quick ? 'quick' : '', 'results.json')
  const { info, results, profiles, fanout } = JSON.parse(readFileSync(path, 'utf8'))
  buildPackages()
  write(info, results, profiles ?? [], fanout, runFeatures())
}

/**
 * `--fanout-only`: runs the fan-out workload alone and writes the report again with it and the
 * other workloads of the last results.json, so that it can be measured again without the rest.
 */
async function fanoutOnly() {
  const path = join(benchDir, 'results', quick ? 'quick' : '', 'results.json')
  const { info, results, profiles, features } = JSON.parse(readFileSync(path, 'utf8'))
  buildPackages()
  const fanout = await runFanout(
    selected,
    {
      rounds: Math.min(config.rounds, 2),
      warmupMs: config.warmupMs.fanout,
      durationMs: config.durationMs.fanout,
    },
    log,
  )
  write(info, results, profiles ?? [], fanout, features)
}

if (flag('report-only')) reportOnly()
else if (flag('features-only')) featuresOnly()
else
  (flag('fanout-only') ? fanoutOnly() : main()).catch((err) => {
    console.error(err)
    process.exit(1)
  })
