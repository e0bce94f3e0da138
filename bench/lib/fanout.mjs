/**
 * The fan-out workload: one publisher, 1,000 subscribers on one topic. Each runtime's servers
 * (a raw loop of sends, Bun's own `server.publish`, crossws's `peer.publish`, Handshake's topics)
 * are driven in turn by `client/fanout.c`; then two Node instances share one Redis, Handshake's
 * backplane against crossws's Redis sync. Rendered as its own section of BENCHMARKS.md.
 */
import { execFileSync, spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TOPIC } from '../servers/fanout-app.mjs'
import { buildClient } from './loadgen.mjs'
import { sleep, startServer, stopServer } from './proc.mjs'
import { startRedis } from './redis.mjs'
import { adapterMissing, benchDir } from './runtimes.mjs'
import { median } from './stats.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const binary = join(here, '..', 'client', 'build', 'fanout')

/** The workload's shape. */
export const FANOUT = {
  subscribers: 1000,
  window: 16,
  size: 64,
  what: '1 publisher, 1,000 subscribers on one topic, 64-byte binary messages, 16 messages in flight (a message is in flight until every subscriber has it)',
}

/** The servers of each runtime, in table order. `peers` are the rows Handshake is divided by. */
const SERVERS = {
  node: [
    { kind: 'raw', name: 'raw loop of `ws` sends', entry: 'servers/node/fanout-raw.mjs' },
    { kind: 'crossws', name: 'crossws `peer.publish`', entry: 'servers/node/fanout-crossws.mjs' },
    {
      kind: 'handshake',
      name: 'Handshake `conn.publish`',
      entry: 'servers/node/fanout-handshake.mjs',
    },
  ],
  bun: [
    { kind: 'raw', name: 'raw loop of `ws.send`', entry: 'servers/bun/fanout-raw.ts' },
    { kind: 'native', name: "Bun's `server.publish`", entry: 'servers/bun/fanout-native.ts' },
    { kind: 'crossws', name: 'crossws `peer.publish`', entry: 'servers/bun/fanout-crossws.ts' },
    {
      kind: 'handshake',
      name: 'Handshake `conn.publish`',
      entry: 'servers/bun/fanout-handshake.ts',
    },
  ],
  deno: [
    { kind: 'raw', name: 'raw loop of `socket.send`', entry: 'servers/deno/fanout-raw.ts' },
    { kind: 'crossws', name: 'crossws `peer.publish`', entry: 'servers/deno/fanout-crossws.ts' },
    {
      kind: 'handshake',
      name: 'Handshake `conn.publish`',
      entry: 'servers/deno/fanout-handshake.ts',
    },
  ],
}

/** How many messages the history row keeps (its stream's length once the run is over). */
const HISTORY_SIZE = 1000

/** The two-instance servers (Node), each started twice on one Redis. */
const CLUSTER = [
  {
    kind: 'crossws',
    name: 'crossws `peer.publish` + Redis sync',
    entry: 'servers/node/fanout-crossws.mjs',
  },
  {
    kind: 'handshake',
    name: 'Handshake + `@handshake/redis`',
    entry: 'servers/node/fanout-handshake.mjs',
  },
  {
    kind: 'handshake-history',
    name: 'Handshake + `@handshake/redis`, history on (Redis Streams, last 1,000 kept)',
    entry: 'servers/node/fanout-handshake.mjs',
    env: { HISTORY: String(HISTORY_SIZE) },
  },
]

/** Runs the fan-out client once against `ports` and resolves with its JSON line. */
function runClient(ports, pids, config) {
  const args = [
    '--ports',
    ports.join(','),
    '--pids',
    pids.join(','),
    '--subs',
    String(FANOUT.subscribers),
    '--window',
    String(FANOUT.window),
    '--size',
    String(FANOUT.size),
    '--warmup-ms',
    String(config.warmupMs),
    '--duration-ms',
    String(config.durationMs),
  ]
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000 + config.durationMs)
    child.on('exit', () => {
      clearTimeout(timer)
      try {
        const result = JSON.parse(out.trim().split('\n').pop() ?? '')
        if (result.error) reject(new Error(result.error))
        else resolve(result)
      } catch {
        reject(new Error(`the fan-out client gave no result: ${out.trim().slice(0, 300)}`))
      }
    })
  })
}

/**
 * What the history row left in Redis: the fan-out topic's stream (its last {@link HISTORY_SIZE}
 * messages) and its hash, by `MEMORY USAGE` (every element counted), per message kept.
 */
function redisHistoryMemory(port) {
  const cli = (...args) =>
    execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).trim()
  try {
    const stream = `handshake:{h:${TOPIC}}`
    const kept = Number(cli('XLEN', stream))
    const streamBytes = Number(cli('MEMORY', 'USAGE', stream, 'SAMPLES', '0'))
    const hashBytes = Number(cli('MEMORY', 'USAGE', `${stream}:m`, 'SAMPLES', '0'))
    if (!(kept > 0)) return { error: `the stream ${stream} holds nothing` }
    return {
      kept,
      streamBytes,
      hashBytes,
      bytesPerMessage: streamBytes / kept,
      messageBytes: FANOUT.size,
    }
  } catch (err) {
    return { error: err.message }
  }
}

/** Why the two-instance rows cannot run here, or undefined. */
function clusterMissing() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'pipe' })
  } catch {
    return 'redis-server is not installed (apt-get install redis-server)'
  }
  const require = createRequire(join(benchDir, 'package.json'))
  for (const name of ['@handshake/redis', 'ioredis']) {
    try {
      require.resolve(name)
    } catch {
      return `${name} is not installed in bench/`
    }
  }
  return undefined
}

function summarize(rounds) {
  const ok = rounds.filter((r) => !r.error)
  if (ok.length === 0) return { rounds: 0, error: rounds[0]?.error }
  const m = (f) => median(ok.map(f))
  return {
    rounds: ok.length,
    failed: rounds.length - ok.length,
    error: rounds.find((r) => r.error)?.error,
    deliveriesPerS: m((r) => r.deliveries_per_s),
    msgsPerS: m((r) => r.msgs_per_s),
    latP50: m((r) => r.lat_p50_us),
    latP99: m((r) => r.lat_p99_us),
    serverUsPerDelivery: m((r) => r.server_cpu_us_per_delivery),
    serverCores: m((r) => r.server_cpu_s / r.wall_s),
    clientCores: m((r) => r.client_cpu_s / r.wall_s),
    missing: ok.reduce((sum, r) => sum + r.missing, 0),
    outOfOrder: ok.reduce((sum, r) => sum + r.out_of_order, 0),
  }
}

/** Runs `servers` (each started `instances` times), interleaved over `rounds`. */
async function measure(servers, { rt, instances, env, rounds, config, log, label }) {
  const rows = servers.map((s) => ({ ...s, results: [], unavailable: undefined }))
  const started = new Map()
  for (const row of rows) {
    if (row.kind === 'handshake' && rt.adapter && adapterMissing(rt)) {
      row.unavailable = adapterMissing(rt)
      continue
    }
    try {
      const list = []
      for (let i = 0; i < instances; i++) {
        const [command, args] = rt.command(row.entry)
        list.push(
          await startServer({
            command,
            args,
            cwd: benchDir,
            env: { ...rt.env, ...env, ...row.env },
            timeoutMs: 30_000,
          }),
        )
      }
      started.set(row, list)
    } catch (err) {
      row.unavailable = `did not start: ${err.message}`
    }
  }
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? rows : [...rows].reverse()
    for (const row of order) {
      const list = started.get(row)
      if (!list) continue
      try {
        row.results.push(
          await runClient(
            list.map((s) => s.port),
            list.flatMap((s) => s.pids()),
            config,
          ),
        )
      } catch (err) {
        row.results.push({ error: err.message })
        log(label, row.kind, 'failed:', err.message)
      }
      // Let the closes of 1,000 connections settle before the next server is measured.
      await sleep(300)
    }
    log(label, `fan-out round ${round + 1}/${rounds} done`)
  }
  for (const list of started.values()) for (const server of list) await stopServer(server)
  return rows.map((row) => ({
    kind: row.kind,
    name: row.name,
    unavailable: row.unavailable,
    ...summarize(row.results),
  }))
}

/**
 * The fan-out workload on the selected runtimes (Node, Bun and Deno; workerd has no shared
 * topic across requests outside a Durable Object), then on two Node instances and one Redis.
 */
export async function runFanout(selected, { rounds, warmupMs, durationMs }, log) {
  buildClient('fanout')
  const config = { warmupMs, durationMs }
  const local = []
  for (const rt of selected) {
    if (!SERVERS[rt.id]) continue
    if (rt.missing) {
      local.push({ id: rt.id, name: rt.name, missing: rt.missing, rows: [] })
      continue
    }
    log(`${rt.name}: fan-out`)
    const rows = await measure(SERVERS[rt.id], {
      rt,
      instances: 1,
      rounds,
      config,
      log,
      label: rt.id,
    })
    local.push({ id: rt.id, name: rt.name, rows })
  }
  let cluster
  const node = selected.find((rt) => rt.id === 'node')
  if (node) {
    const missing = clusterMissing()
    if (missing) {
      cluster = { missing, rows: [] }
    } else {
      log('two Node instances on one Redis: fan-out')
      const redis = await startRedis()
      try {
        const rows = await measure(CLUSTER, {
          rt: node,
          instances: 2,
          env: { REDIS_URL: redis.url },
          rounds,
          config,
          log,
          label: 'cluster',
        })
        cluster = { rows, history: redisHistoryMemory(new URL(redis.url).port) }
      } finally {
        await redis.stop()
      }
    }
  }
  return { ...FANOUT, local, cluster }
}

// --- the report ---

const int = (x) => (x === undefined ? '–' : Math.round(x).toLocaleString('en-US'))
const ms = (us) => (us === undefined ? '–' : `${(us / 1000).toFixed(1)} ms`)
const ratio = (a, b) =>
  a === undefined || b === undefined || b === 0 ? '–' : `${(a / b).toFixed(2)}×`

/** Whether a row is one of Handshake's (the plain one, or with history). */
const isHandshake = (row) => row.kind === 'handshake' || row.kind === 'handshake-history'

function fanoutTable(rows) {
  const peers = rows.filter((r) => !isHandshake(r))
  const header = [
    'server',
    'deliveries/s',
    'messages/s',
    ...peers.map(
      (p) =>
        `Handshake ÷ ${p.kind === 'raw' ? 'raw loop' : p.kind === 'native' ? 'Bun native' : p.kind}`,
    ),
    'latency p50',
    'latency p99',
    'server CPU µs/delivery',
    'server cores',
    'fan-out client cores',
  ]
  const hs = rows.find((r) => r.kind === 'handshake')
  const line = (cells) => `| ${cells.join(' | ')} |`
  const lines = [line(header), line(header.map(() => '---'))]
  for (const row of rows) {
    if (row.unavailable || row.rounds === 0) {
      const why = row.unavailable ? `not available: ${row.unavailable}` : `failed: ${row.error}`
      lines.push(line([row.name, why, ...header.slice(2).map(() => '')]))
      continue
    }
    const broken =
      row.missing || row.outOfOrder
        ? ` ⚠ ${row.missing} missing, ${row.outOfOrder} out of order`
        : ''
    lines.push(
      line([
        row.name,
        `${int(row.deliveriesPerS)}${broken}`,
        int(row.msgsPerS),
        ...peers.map((p) =>
          row.kind === 'handshake' && hs && !p.unavailable
            ? ratio(hs.deliveriesPerS, p.deliveriesPerS)
            : '',
        ),
        ms(row.latP50),
        ms(row.latP99),
        row.serverUsPerDelivery === undefined ? '–' : row.serverUsPerDelivery.toFixed(2),
        row.serverCores === undefined ? '–' : row.serverCores.toFixed(2),
        row.clientCores === undefined ? '–' : row.clientCores.toFixed(2),
      ]),
    )
  }
  return lines.join('\n')
}

/** The ratios of Handshake to each peer, per runtime, for the summary and the closing note. */
export function fanoutRatios(fanout) {
  const out = []
  const add = (where, rows) => {
    const hs = rows.find((r) => r.kind === 'handshake')
    if (!hs?.deliveriesPerS) return
    const parts = rows
      .filter((r) => !isHandshake(r) && r.deliveriesPerS)
      .map((r) => `${(hs.deliveriesPerS / r.deliveriesPerS).toFixed(2)}× ${r.name}`)
    if (parts.length) out.push(`${where}: ${parts.join(', ')}`)
  }
  for (const rt of fanout?.local ?? []) add(rt.name, rt.rows)
  if (fanout?.cluster) add('two Node instances on one Redis', fanout.cluster.rows)
  return out
}

/**
 * What history costs over Redis (issue 20): the history row against the plain backplane's, and
 * what Redis keeps per message.
 */
function historyLines(cluster) {
  const plain = cluster.rows.find((r) => r.kind === 'handshake')
  const kept = cluster.rows.find((r) => r.kind === 'handshake-history')
  if (!plain?.deliveriesPerS || !kept?.deliveriesPerS) return []
  const lines = [
    `With history on (one Lua script per message appends it to the topic's Redis stream and publishes it with its position; every instance, the publisher's included, delivers it when it comes back through pub/sub), Handshake makes ${ratio(kept.deliveriesPerS, plain.deliveriesPerS)} the deliveries per second of the plain backplane, at ${ratio(kept.serverUsPerDelivery, plain.serverUsPerDelivery)} its server CPU per delivery (issue 20's target: at most 2×). The server CPU is the two Node instances'; redis-server's is not counted.`,
  ]
  const memory = cluster.history
  if (memory?.bytesPerMessage) {
    lines.push(
      '',
      `Redis memory per message kept: ${Math.round(memory.bytesPerMessage)} bytes for a ${memory.messageBytes}-byte binary message (\`MEMORY USAGE\` of the topic's stream, ${memory.kept.toLocaleString('en-US')} messages: ${memory.streamBytes.toLocaleString('en-US')} bytes; its hash of epoch, offset and publishers: ${memory.hashBytes.toLocaleString('en-US')} bytes). Bytes go one character per byte, so a byte of 0x80 or more takes two in Redis.`,
    )
  } else if (memory?.error) {
    lines.push('', `Redis memory per message kept: not measured (${memory.error}).`)
  }
  return lines
}

/** The fan-out section of BENCHMARKS.md. */
export function renderFanout(fanout) {
  if (!fanout) return ''
  const out = [
    `## Fan-out: ${fanout.what}`,
    '',
    "Deliveries per second count every message a subscriber received (messages × 1,000). Latency runs from the publisher's send to each subscriber's receive, on the fan-out client's one clock. The client (`bench/client/fanout.c`) also checks each subscriber's order: a ⚠ marks a row where a message was missing or out of order.",
    '',
  ]
  for (const rt of fanout.local) {
    out.push(`### ${rt.name}`, '')
    out.push(rt.missing ? `Not available: ${rt.missing}` : fanoutTable(rt.rows), '')
  }
  if (fanout.cluster) {
    out.push(
      '### Two Node instances on one Redis',
      '',
      "The publisher connects to instance A; the subscribers are spread over A and B, 500 each, so half of every message crosses Redis. Handshake subscribes one Redis channel per topic and ignores its own echo; crossws's sync publishes every message on one channel as JSON with base64 bytes.",
      '',
      fanout.cluster.missing
        ? `Not available: ${fanout.cluster.missing}`
        : fanoutTable(fanout.cluster.rows),
      '',
    )
    const history = historyLines(fanout.cluster)
    if (history.length) out.push(...history, '')
  }
  const ratios = fanoutRatios(fanout)
  if (ratios.length) out.push('Handshake against each: ', '', ...ratios.map((r) => `- ${r}`), '')
  return out.join('\n')
}
