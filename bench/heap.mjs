/**
 * What one idle connection keeps alive, by name: `pnpm bench:heap`.
 *
 * For each runtime (Node, Bun, Deno) and each server (raw, Hono's helper, crossws, Handshake)
 * it starts the bench's server entry, opens and closes a few connections to warm it up, takes a
 * heap snapshot, opens N idle connections (1,000 by default) with the C load generator, takes a
 * second snapshot, and groups the difference by constructor, closure (name and definition site),
 * closure context (the variables it holds), string and array kind. It prints, per connection,
 * what each server holds, and what Handshake holds over each of the others.
 *
 * Snapshots: Node through `node:v8` (a preloaded hook, on SIGUSR2), Bun through
 * `Bun.generateHeapSnapshot('v8')` (the same, with `bun --preload`), Deno through its inspector
 * (`--inspect=127.0.0.1:0`, HeapProfiler over the DevTools protocol). workerd has no snapshot here.
 *
 * Options: --runtimes node,bun,deno  --kinds raw,hono,crossws,handshake  --conns 1000
 *          --top 30  --keep (keep the .heapsnapshot files)  --reuse (analyse the kept ones
 *          again, with no server)  --entry kind=path (another entry, relative to bench/, for a
 *          kind of your own)
 * Writes bench/results/heap/<runtime>.md and .json.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { diffSummaries, summarizeSnapshot } from './lib/heapsnapshot.mjs'
import { connectInspector, inspectorUrl } from './lib/inspector.mjs'
import { buildLoadgen, openIdle } from './lib/loadgen.mjs'
import { sleep, startServer, stopServer } from './lib/proc.mjs'
import { benchDir, KINDS, rootDir, runtimes, serverName } from './lib/runtimes.mjs'

const argv = process.argv.slice(2)
const option = (name) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}
const options = (name) => argv.flatMap((a, i) => (a === `--${name}` ? [argv[i + 1]] : []))
const conns = Number(option('conns') ?? 1000)
const top = Number(option('top') ?? 30)
const reuse = argv.includes('--reuse')
const keep = argv.includes('--keep') || reuse
const wanted = (option('runtimes') ?? 'node,bun,deno').split(',')
const extraEntries = Object.fromEntries(options('entry').map((e) => e.split('=')))
const kinds = (option('kinds') ?? KINDS.join(',')).split(',')
const outDir = join(benchDir, 'results', 'heap')
const log = (...args) => console.error('[heap]', ...args)

/** The command that runs one entry with a way to take snapshots. */
function commandFor(rt, kind) {
  const entry = extraEntries[kind] ?? rt.entry(kind)
  const [command, args] = rt.command(entry)
  const rest = args.slice(0, -1)
  if (rt.id === 'node') return [command, [...rest, '--import', './heap/hook-node.mjs', entry]]
  if (rt.id === 'bun') return [command, [...rest, '--preload', './heap/hook-bun.ts', entry]]
  if (rt.id === 'deno') return [command, [...rest, '--inspect=127.0.0.1:0', entry]]
  throw new Error(`no heap snapshots on ${rt.id}`)
}

/** Takes snapshots of one server: through a signal for Node and Bun, the inspector for Deno. */
async function snapshotter(rt, server, dir) {
  if (rt.id === 'deno') {
    let url
    for (let i = 0; i < 50 && !url; i++) {
      url = inspectorUrl(server.stderr())
      if (!url) await sleep(100)
    }
    if (!url) throw new Error('Deno printed no inspector URL')
    const inspector = await connectInspector(url)
    let n = 0
    return {
      take: async () => {
        const path = join(dir, `deno-${++n}.heapsnapshot`)
        await inspector.heapSnapshot(path)
        return path
      },
      close: () => inspector.close(),
    }
  }
  let out = ''
  const waiters = []
  server.proc.stdout.on('data', (chunk) => {
    out += chunk
    let nl = out.indexOf('\n')
    while (nl >= 0) {
      const line = out.slice(0, nl)
      out = out.slice(nl + 1)
      if (line.startsWith('{"heapsnapshot"')) waiters.shift()?.(JSON.parse(line).heapsnapshot)
      nl = out.indexOf('\n')
    }
  })
  return {
    take: () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no snapshot within 120 s')), 120_000)
        waiters.push((path) => {
          clearTimeout(timer)
          resolve(path)
        })
        server.proc.kill('SIGUSR2')
      }),
    close: () => {},
  }
}

/** The per-type object counts of `bun:jsc`'s heapStats() the Bun hook saves next to a snapshot. */
function jscCounts(path) {
  try {
    return JSON.parse(readFileSync(`${path}.jsc-stats.json`, 'utf8')).objectTypeCounts
  } catch {
    return undefined
  }
}

/**
 * The owners the new objects are split among: the nearest of these above an object in the
 * dominator tree gets its bytes. The runtimes' own connection objects come first, then what
 * each library adds.
 */
const OWNERS = [
  ['Hono Context (c, with HonoRequest and c.env)', /^Context$/],
  [
    'the request (view, copy, Headers)',
    /^_?(UpgradeRequest|DetachedRequest|Request\$1|Request|Headers|_Headers)$|^native Request$/,
  ],
  ["Node's IncomingMessage", /^IncomingMessage$/],
  ['core: Conn and its events', /^_?Conn$|^#Events$|^_?ConnEvents$/],
  ["core: the upgrader's #serve frame", /^async frame of #serve /],
  ["app: serve's own frame", /^async frame of serve /],
  // Bun's snapshots name no function: its suspended frames cannot be told apart.
  ['suspended async frames (Bun: #serve and serve together)', /^AsyncFunctionGenerator/],
  ['adapter socket', /^(WsSocket|Link|DenoSocket)$/],
  ["runtime's WebSocket", /^(WebSocket|native ServerWebSocket|Receiver|Sender)$/],
  ["runtime's TCP socket", /^(Socket|TCP|synthetic Node \/ TCPSocketWrap)$/],
  ['crossws peer', /Peer$/],
]

function compare(beforePath, afterPath, opened) {
  const before = summarizeSnapshot(beforePath)
  const after = summarizeSnapshot(afterPath, before.ids, OWNERS)
  const result = { opened, ...diffSummaries(before, after, opened) }
  const a = jscCounts(beforePath)
  const b = jscCounts(afterPath)
  if (a && b) {
    result.jscTypes = Object.fromEntries(
      Object.keys({ ...a, ...b })
        .map((type) => [type, ((b[type] ?? 0) - (a[type] ?? 0)) / opened])
        .filter(([, n]) => Math.abs(n) >= 0.05),
    )
  }
  return result
}

async function measure(rt, kind) {
  const dir = join(outDir, 'snapshots', rt.id, kind)
  if (reuse) {
    // The snapshots a run with --keep left: analyse them again without a server.
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.heapsnapshot'))
      .sort(
        (x, y) =>
          Number(/(\d+)\.heapsnapshot$/.exec(x)[1]) - Number(/(\d+)\.heapsnapshot$/.exec(y)[1]),
      )
    return compare(join(dir, files[0]), join(dir, files[1]), conns)
  }
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const [command, args] = commandFor(rt, kind)
  const server = await startServer({
    command,
    args,
    cwd: benchDir,
    env: { ...rt.env, HEAP_SNAPSHOT_DIR: dir },
    timeoutMs: 30_000,
  })
  let snaps
  try {
    snaps = await snapshotter(rt, server, dir)
    // Warm up: the first connections compile code and make the server's shared objects.
    const warm = await openIdle(server.port, 50)
    await warm.close()
    await sleep(500)
    const beforePath = await snaps.take()
    const held = await openIdle(server.port, conns)
    await sleep(500)
    const afterPath = await snaps.take()
    await held.close()
    return compare(beforePath, afterPath, held.opened)
  } finally {
    snaps?.close()
    await stopServer(server)
    if (!keep) rmSync(dir, { recursive: true, force: true })
  }
}

const fmt = (x, digits = 0) =>
  x === undefined ? '·' : x.toLocaleString('en-US', { maximumFractionDigits: digits })
const signed = (x) =>
  x === undefined ? '·' : `${x > 0 ? '+' : x < 0 ? '−' : ''}${fmt(Math.abs(x))}`

/** The markdown report of one runtime. */
function render(rt, results) {
  const hs = results.handshake
  const lines = [
    `## ${rt.name}: heap per idle connection, by what it is`,
    '',
    `${conns.toLocaleString('en-US')} idle connections, second snapshot minus the first, divided by the connections. Self sizes (bytes of the object itself, not what it points to); "n" is objects per connection.`,
    '',
    '| server | heap per conn (snapshot) |',
    '| --- | --- |',
    ...kinds
      .filter((k) => results[k])
      .map((k) => `| ${serverName(rt, k)} | ${fmt(results[k].bytes)} B |`),
    '',
  ]
  if (!hs) return lines.join('\n')
  const others = kinds.filter((k) => k !== 'handshake' && results[k])
  const keys = new Set()
  for (const k of kinds) for (const key of results[k]?.groups.keys() ?? []) keys.add(key)
  const rows = [...keys].map((key) => {
    const get = (k) => results[k]?.groups.get(key)
    return { key, hs: get('handshake'), others: Object.fromEntries(others.map((k) => [k, get(k)])) }
  })
  const over = (row, k) => (row.hs?.bytes ?? 0) - (row.others[k]?.bytes ?? 0)
  const base = others.includes('raw') ? 'raw' : others[0]
  rows.sort((a, b) => Math.abs(over(b, base)) - Math.abs(over(a, base)))
  lines.push(
    `### What Handshake holds over ${base}, largest first`,
    '',
    `| object | ${others.map((k) => `${k} n / B`).join(' | ')} | Handshake n / B | over ${others.join(' | over ')} | who holds the new ones (Handshake) |`,
    `| --- | ${others.map(() => '---').join(' | ')} | --- | ${others.map(() => '---').join(' | ')} | --- |`,
  )
  for (const row of rows.slice(0, top)) {
    const cell = (g) => (g ? `${fmt(g.count, 1)} / ${fmt(g.bytes)}` : '·')
    lines.push(
      `| \`${row.key.replaceAll('|', '\\|')}\` | ${others.map((k) => cell(row.others[k])).join(' | ')} | ${cell(row.hs)} | ${others.map((k) => signed(over(row, k))).join(' | ')} | ${(row.hs?.retainers ?? []).map((r) => `\`${r.replaceAll('|', '\\|')}\``).join('<br>')} |`,
    )
  }
  // Every new byte, once, by owner.
  const ownerNames = [...OWNERS.map(([name]) => name), 'other']
  lines.push(
    '',
    '### Who owns the new bytes, per connection',
    '',
    'Each new object counted once, under the nearest of these owners above it in the dominator tree (what would be freed with it). "other" is what no listed owner dominates: closures, promises and contexts shared between two owners, the runtime\'s internals.',
    '',
    `| owner | ${kinds.filter((k) => results[k]).join(' | ')} |`,
    `| --- | ${kinds
      .filter((k) => results[k])
      .map(() => '---')
      .join(' | ')} |`,
    ...ownerNames
      .filter((name) => kinds.some((k) => (results[k]?.owned?.[name] ?? 0) >= 8))
      .map(
        (name) =>
          `| ${name} | ${kinds
            .filter((k) => results[k])
            .map((k) => fmt(results[k].owned?.[name] ?? 0))
            .join(' | ')} |`,
      ),
  )

  // What the new objects of each kind keep alive on their own, largest first.
  const byRetained = rows
    .filter((row) => (row.hs?.retained ?? 0) >= 16 && (row.hs?.newCount ?? 0) >= 0.5)
    .sort((a, b) => b.hs.retained - a.hs.retained)
    .slice(0, top)
  lines.push(
    '',
    `### What each new Handshake object keeps alive, per connection`,
    '',
    'Retained size of the objects made since the first snapshot: the bytes that would be freed if that object were released (DevTools\' "retained size"). Rows overlap: an object\'s figure includes what it holds.',
    '',
    `| object | new per conn | retained B per conn | ${others.map((k) => `${k} retained`).join(' | ')} |`,
    `| --- | --- | --- | ${others.map(() => '---').join(' | ')} |`,
    ...byRetained.map(
      (row) =>
        `| \`${row.key.replaceAll('|', '\\|')}\` | ${fmt(row.hs.newCount, 1)} | ${fmt(row.hs.retained)} | ${others.map((k) => fmt(row.others[k]?.retained)).join(' | ')} |`,
    ),
  )
  if (hs.jscTypes) {
    const types = Object.keys({ ...hs.jscTypes, ...results[base]?.jscTypes })
    const d = (t) => (hs.jscTypes[t] ?? 0) - (results[base]?.jscTypes?.[t] ?? 0)
    types.sort((x, y) => Math.abs(d(y)) - Math.abs(d(x)))
    lines.push(
      '',
      `\`bun:jsc\` heapStats().objectTypeCounts, objects per connection, Handshake over ${base}: ${types
        .slice(0, 16)
        .map((t) => `${t} ${d(t) > 0 ? '+' : ''}${d(t).toFixed(1)}`)
        .join(', ')}`,
    )
  }
  const sum = (k) => results.handshake.bytes - results[k].bytes
  lines.push(
    '',
    `Total over ${others.map((k) => `${k}: ${signed(sum(k))} B`).join(', ')} per connection.`,
    '',
  )
  return lines.join('\n')
}

async function main() {
  buildLoadgen()
  mkdirSync(outDir, { recursive: true })
  for (const rt of runtimes().filter((r) => wanted.includes(r.id))) {
    if (rt.missing) {
      log(rt.name, 'skipped:', rt.missing)
      continue
    }
    const results = {}
    for (const kind of kinds) {
      log(`${rt.name} ${kind}: ${conns} idle connections`)
      try {
        results[kind] = await measure(rt, kind)
      } catch (err) {
        log(`${rt.name} ${kind} failed:`, err.message)
      }
    }
    const report = render(rt, results).split(rootDir).join('.')
    writeFileSync(join(outDir, `${rt.id}.md`), `${report}\n`)
    writeFileSync(
      join(outDir, `${rt.id}.json`),
      JSON.stringify(
        Object.fromEntries(
          Object.entries(results).map(([k, r]) => [
            k,
            {
              opened: r.opened,
              bytes: r.bytes,
              groups: Object.fromEntries(r.groups),
              owned: r.owned,
              jscTypes: r.jscTypes,
            },
          ]),
        ),
        null,
        1,
      ),
    )
    process.stdout.write(`${report}\n`)
  }
  try {
    if (readdirSync(join(outDir, 'snapshots')).length === 0 && !keep) {
      rmSync(join(outDir, 'snapshots'), { recursive: true })
    }
  } catch {
    // nothing kept
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
