/** BENCHMARKS.md: the summary, the targets, every row with its ratios, the machine, the method. */
import { fanoutRatios, renderFanout } from './fanout.mjs'
import { KIND_NAMES, KINDS } from './runtimes.mjs'
import { CHANNEL_WORKLOADS, LATENCY, median, pairedRatio, range, WORKLOADS } from './stats.mjs'

// --- formatting ---

/** CPU use (in cores) from which a row counts as bound by the 2-core machine. */
const MACHINE_BOUND = 1.8

const int = (x) => (x === undefined ? '–' : Math.round(x).toLocaleString('en-US'))
const dec = (x, digits = 1) => (x === undefined ? '–' : x.toFixed(digits))
const ms = (us) => (us === undefined ? '–' : `${(us / 1000).toFixed(2)} ms`)
const ratio = (a, b) =>
  a === undefined || b === undefined || b === 0 ? '–' : `${(a / b).toFixed(2)}×`
const us = (x) => (x === undefined ? '–' : `${Math.round(x).toLocaleString('en-US')} µs`)
const signedUs = (x) =>
  x === undefined
    ? '–'
    : `${x >= 0 ? '+' : '−'}${Math.round(Math.abs(x)).toLocaleString('en-US')} µs`
const bytes = (x) => (x === undefined ? '–' : `${Math.round(x).toLocaleString('en-US')} B`)
const signedBytes = (x) =>
  x === undefined
    ? '–'
    : `${x >= 0 ? '+' : '−'}${Math.round(Math.abs(x)).toLocaleString('en-US')} B`

/**
 * `low–high`, each formatted by `f` (`low to high` when low is negative); '' when there is no
 * spread (one round).
 */
const spreadOf = (r, f) =>
  r && r[0] !== r[1] ? `${f(r[0])}${r[0] < 0 ? ' to ' : '–'}${f(r[1])}` : ''
/** A figure with its spread: `282,820 (270,114–290,001)`. */
const withSpread = (value, r, f) => {
  const s = spreadOf(r, f)
  return value === undefined ? '–' : s ? `${f(value)} (${s})` : f(value)
}
const x2 = (v) => `${v.toFixed(2)}×`
const d2 = (v) => v.toFixed(2)
/** A paired ratio (see pairedRatio) as `0.87× (0.84–0.91)`. */
const pairedCell = (p) => {
  if (!p) return '–'
  const s = spreadOf(p.spread, d2)
  return s ? `${x2(p.median)} (${s})` : x2(p.median)
}

/** A server's rounds of one workload, or undefined (an older results.json has none). */
const roundsOf = (rt, kind, w) => (rt.rows[kind].unavailable ? undefined : rt.rounds?.[kind]?.[w])

/** The round-by-round ratio of two servers' figure `f` in workload `w` (and `w2` for b). */
function paired(rt, a, b, w, f, w2 = w) {
  const ra = roundsOf(rt, a, w)
  const rb = roundsOf(rt, b, w2)
  return ra && rb ? pairedRatio(ra, rb, f) : undefined
}

/** The round-by-round difference `a - b` of a figure: its median and spread. */
function pairedDiff(ra, rb, f) {
  if (!ra || !rb) return undefined
  const diffs = []
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) {
    if (ra[i]?.error || rb[i]?.error) continue
    const d = f(ra[i]) - f(rb[i])
    if (Number.isFinite(d)) diffs.push(d)
  }
  if (diffs.length === 0) return undefined
  return { median: median(diffs, true), spread: range(diffs, true) }
}

/**
 * Whether a figure meets its target, counting its spread: met (✅) only when the whole spread
 * is on the right side of the target, missed (❌) when the whole spread is on the wrong side,
 * and not met (↔, "the spread crosses the target") otherwise.
 */
function verdict(p, target, atLeast = true) {
  if (!p) return '–'
  const [lo, hi] = p.spread ?? [p.median, p.median]
  const good = (v) => (atLeast ? v >= target : v <= target)
  if (good(lo) && good(hi)) return '✅'
  if (!good(lo) && !good(hi)) return '❌'
  return '↔'
}

/** Whether this run shared the machine: other work took a noticeable share of the CPUs. */
function otherLoad(results) {
  const others = []
  for (const rt of results)
    for (const kind of KINDS)
      for (const w of Object.keys(WORKLOADS)) {
        const cores = rt.rows[kind][w]?.otherCores
        if (cores !== undefined) others.push(cores)
      }
  others.sort((a, b) => a - b)
  return {
    median: others[others.length >> 1] ?? 0,
    max: others[others.length - 1] ?? 0,
  }
}

/** A row that could not be measured says why, in its first figure cell. */
function missing(row, workload) {
  if (row.unavailable) return `not available: ${row.unavailable}`
  const w = row[workload]
  if (!w) return 'not measured'
  if (w.rounds === 0) return `failed: ${w.error}`
  return undefined
}

function peerHeader(kinds) {
  return kinds.map((k) => `÷ ${k === 'raw' ? 'raw' : KIND_NAMES[k]}`)
}

function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

// --- sections ---

function throughputTable(rt, workload) {
  const spec = WORKLOADS[workload]
  const metric = spec.metric
  const churn = workload === 'churn'
  const header = [
    'server',
    spec.unit,
    ...peerHeader(KINDS),
    churn ? 'echo RTT p50' : 'RTT p50',
    churn ? 'close p50' : 'RTT p99',
    churn ? 'close p99' : undefined,
    churn ? 'upgrade p50' : undefined,
    churn ? 'TCP end p50' : undefined,
    `loadgen CPU µs/${spec.per}`,
    `server CPU µs/${spec.per}`,
    'loadgen cores',
    'server cores',
    'others cores',
  ].filter(Boolean)
  const rows = KINDS.map((kind) => {
    const row = rt.rows[kind]
    const why = missing(row, workload)
    if (why) return [row.name, why, ...header.slice(2).map(() => '')]
    const w = row[workload]
    const value = w[metric]
    const field = { msgsPerS: 'msgs_per_s', mbPerS: 'mb_per_s', connsPerS: 'conns_per_s' }[metric]
    const ratios = KINDS.map((other) => {
      if (other === kind) return '—'
      const p = paired(rt, kind, other, workload, (r) => r[field])
      if (p) return pairedCell(p)
      const o = rt.rows[other][workload]
      return o && !rt.rows[other].unavailable ? ratio(value, o[metric]) : '–'
    })
    const note = w.failed ? ` (${w.failed} round(s) failed)` : ''
    // † marks a row where loadgen, the server and the rest together kept both CPUs busy.
    const bound = w.clientCores + w.serverCores + w.otherCores >= MACHINE_BOUND ? ' †' : ''
    const bad = w.badEchoes ? ` ⚠ ${w.badEchoes} wrong echoes` : ''
    return [
      row.name,
      `${withSpread(value, w.spread?.[metric], workload === 'large' ? dec : int)}${bound}${note}${bad}`,
      ...ratios,
      ms(w.rttP50),
      churn ? ms(w.closeP50) : ms(w.rttP99),
      churn ? ms(w.closeP99) : undefined,
      churn ? ms(w.upgradeP50) : undefined,
      churn ? ms(w.tcpEndP50) : undefined,
      dec(w.clientUsPerUnit, 2),
      withSpread(w.serverUsPerUnit, w.spread?.serverUsPerUnit, d2),
      dec(w.clientCores, 2),
      dec(w.serverCores, 2),
      dec(w.otherCores, 2),
    ].filter((c) => c !== undefined)
  })
  return table(header, rows)
}

function latencyTable(rt) {
  const header = [
    'server',
    'RTT p50',
    'p90',
    'p99',
    'p99.9',
    'mean',
    'p50 over raw',
    'p99 over raw',
    'msg/s',
    'loadgen CPU µs/msg',
    'server CPU µs/msg',
    'others cores',
  ]
  const raw = rt.rows.raw.unavailable ? undefined : rt.rows.raw.latency
  const rows = KINDS.map((kind) => {
    const row = rt.rows[kind]
    const why = missing(row, 'latency')
    if (why) return [row.name, why, ...header.slice(2).map(() => '')]
    const w = row.latency
    const over = (f) => (kind === 'raw' || !raw?.[f] ? '—' : signedUs(w[f] - raw[f]))
    return [
      row.name,
      us(w.rttP50),
      us(w.rttP90),
      us(w.rttP99),
      us(w.rttP999),
      us(w.rttMean),
      over('rttP50'),
      over('rttP99'),
      int(w.msgsPerS),
      dec(w.clientUsPerUnit, 2),
      dec(w.serverUsPerUnit, 2),
      dec(w.otherCores, 2),
    ]
  })
  return table(header, rows)
}

/**
 * The channel protocol against the raw event-controller echo, on the same server (`events`) in
 * the same rounds: throughput, the ratio round by round, and the server's CPU per message.
 */
function channelTable(rt) {
  const header = [
    'workload',
    'msg/s (min–max)',
    '÷ event echo',
    'server CPU µs/msg',
    'event echo CPU ÷ this',
    'loadgen CPU µs/msg',
    'loadgen cores',
    'server cores',
    'others cores',
  ]
  const events = rt.rows.events
  const lines = [
    ['small', 'Event-controller echo (`/`, 32-byte text)'],
    ...Object.entries(CHANNEL_WORKLOADS).map(([w, c]) => [w, c.title]),
  ]
  const rows = lines.map(([w, title]) => {
    const why = missing(events, w)
    if (why) return [title, why, ...header.slice(2).map(() => '')]
    const m = events[w]
    const base = w === 'small'
    const bad = m.badEchoes ? ` ⚠ ${m.badEchoes} wrong answers` : ''
    const bound = m.clientCores + m.serverCores + m.otherCores >= MACHINE_BOUND ? ' †' : ''
    return [
      title,
      `${withSpread(m.msgsPerS, m.spread?.msgsPerS, int)}${bound}${bad}`,
      base ? '—' : pairedCell(paired(rt, 'events', 'events', w, (r) => r.msgs_per_s, 'small')),
      withSpread(m.serverUsPerUnit, m.spread?.serverUsPerUnit, d2),
      base
        ? '—'
        : pairedCell(paired(rt, 'events', 'events', 'small', (r) => r.server_cpu_us_per_unit, w)),
      dec(m.clientUsPerUnit, 2),
      dec(m.clientCores, 2),
      dec(m.serverCores, 2),
      dec(m.otherCores, 2),
    ]
  })
  return table(header, rows)
}

// What Handshake added to the p50 round trip over raw in round 1 (issue 14): no worse.
const LATENCY_BUDGET_US = { node: 9, bun: 6 }

function idleTable(rt) {
  const header = [
    'server',
    'connections',
    'RSS per conn',
    ...peerHeader(KINDS),
    'RSS over raw',
    'heap per conn',
    'heap over raw',
    'empty server RSS',
    'time to open all',
  ]
  const raw = rt.rows.raw.idle
  const rows = KINDS.map((kind) => {
    const row = rt.rows[kind]
    const why = missing(row, 'idle')
    if (why) return [row.name, why, ...header.slice(2).map(() => '')]
    const w = row.idle
    const ratios = KINDS.map((other) => {
      if (other === kind) return '—'
      const o = rt.rows[other].idle
      return o && !rt.rows[other].unavailable ? ratio(w.rssPerConn, o.rssPerConn) : '–'
    })
    const usable = raw && !rt.rows.raw.unavailable && raw.rounds > 0
    return [
      row.name,
      int(w.conns),
      bytes(w.rssPerConn),
      ...ratios,
      kind === 'raw' || !usable ? '—' : signedBytes(w.rssPerConn - raw.rssPerConn),
      rt.heap ? bytes(w.heapPerConn) : 'n/a',
      rt.heap && kind !== 'raw' && usable ? signedBytes(w.heapPerConn - raw.heapPerConn) : '—',
      w.baseRss === undefined ? '–' : `${(w.baseRss / 2 ** 20).toFixed(1)} MiB`,
      w.openS === undefined ? '–' : `${w.openS.toFixed(2)} s`,
    ]
  })
  return table(header, rows)
}

/**
 * The targets of the issues, for Handshake on one runtime. Each ratio is taken round by round
 * (the servers ran side by side in each round) and shown as its median and its spread over the
 * rounds; a target counts as met (✅) only when its whole spread meets it, as missed (❌) when
 * its whole spread misses it, and as not met (↔) when the spread crosses it.
 */
function targets(rt) {
  const hs = rt.rows.handshake
  const out = []
  const mark = (ok) => (ok === undefined ? '–' : ok ? '✅' : '❌')
  if (hs.unavailable) return [`- Handshake is not available on ${rt.name}: ${hs.unavailable}`]
  const get = (kind, w) => (rt.rows[kind].unavailable ? undefined : rt.rows[kind][w])
  const cpu = (r) => r.server_cpu_us_per_unit
  const small = get('handshake', 'small')
  const rawSmall = get('raw', 'small')
  const smallRatio = paired(rt, 'handshake', 'raw', 'small', (r) => r.msgs_per_s)
  if (smallRatio) {
    out.push(
      `- ${verdict(smallRatio, 0.95)} small-message throughput ${pairedCell(smallRatio)} raw (target ≥ 0.95×)`,
    )
    const c = paired(rt, 'raw', 'handshake', 'small', cpu)
    if (c && small?.serverUsPerUnit && rawSmall?.serverUsPerUnit) {
      out.push(
        `  - server CPU per message: raw's ÷ Handshake's ${pairedCell(c)} (${small.serverUsPerUnit.toFixed(2)} against ${rawSmall.serverUsPerUnit.toFixed(2)} µs): the throughput a CPU-bound server could reach, a figure less sensitive to a shared machine`,
      )
    }
  }
  const idle = get('handshake', 'idle')
  const rawIdle = get('raw', 'idle')
  if (idle?.rssPerConn !== undefined && rawIdle?.rssPerConn !== undefined) {
    const d = pairedDiff(
      roundsOf(rt, 'handshake', 'idle'),
      roundsOf(rt, 'raw', 'idle'),
      (r) => r.rssPerConn,
    )
    const h = rt.heap
      ? pairedDiff(
          roundsOf(rt, 'handshake', 'idle'),
          roundsOf(rt, 'raw', 'idle'),
          (r) => r.heapPerConn,
        )
      : undefined
    const both = [d, h].filter(Boolean).map((p) => verdict(p, 2048, false))
    const m = both.includes('❌') ? '❌' : both.includes('↔') ? '↔' : both.length ? '✅' : '–'
    out.push(
      `- ${m} idle memory over raw: RSS ${d ? withSpread(d.median, d.spread, signedBytes) : '–'}` +
        `${h ? `, heap ${withSpread(h.median, h.spread, signedBytes)}` : ''} per connection (target ≤ 2 KiB)`,
    )
  }
  for (const peer of ['hono', 'crossws']) {
    const parts = []
    const marks = []
    for (const w of Object.keys(WORKLOADS)) {
      const field = { msgsPerS: 'msgs_per_s', mbPerS: 'mb_per_s', connsPerS: 'conns_per_s' }[
        WORKLOADS[w].metric
      ]
      const p = paired(rt, 'handshake', peer, w, (r) => r[field])
      if (!p) continue
      marks.push(verdict(p, 1))
      parts.push(`${WORKLOADS[w].title.toLowerCase()} ${pairedCell(p)}`)
    }
    if (parts.length) {
      const m = marks.includes('❌') ? '❌' : marks.includes('↔') ? '↔' : '✅'
      out.push(`- ${m} against ${KIND_NAMES[peer]}: ${parts.join(', ')} (target ≥ 1.00× on each)`)
    }
  }
  for (const [w, spec] of Object.entries(CHANNEL_WORKLOADS)) {
    const p = paired(rt, 'events', 'events', w, (r) => r.msgs_per_s, 'small')
    if (!p) continue
    const c = paired(rt, 'events', 'events', 'small', cpu, w)
    const m = get('events', w)
    out.push(
      `- ${verdict(p, 0.7)} ${spec.title.toLowerCase()}: ${pairedCell(p)} the raw event echo's throughput (target ≥ 0.7×); server CPU ${dec(m?.serverUsPerUnit, 2)} µs per message against the echo's ${dec(get('events', 'small')?.serverUsPerUnit, 2)}, ${pairedCell(c)} (${verdict(c, 0.7)} by CPU)`,
    )
  }
  const latency = get('handshake', 'latency')
  const rawLatency = get('raw', 'latency')
  if (latency?.rttP50 !== undefined && rawLatency?.rttP50 !== undefined) {
    const over = pairedDiff(
      roundsOf(rt, 'handshake', 'latency'),
      roundsOf(rt, 'raw', 'latency'),
      (r) => r.rtt_p50_us,
    ) ?? { median: latency.rttP50 - rawLatency.rttP50 }
    const budget = LATENCY_BUDGET_US[rt.id]
    out.push(
      `- ${budget === undefined ? '–' : verdict(over, budget, false)} latency: one message in flight, p50 ${us(latency.rttP50)} against raw's ${us(rawLatency.rttP50)}, ${withSpread(over.median, over.spread, signedUs)}; p99 ${signedUs(latency.rttP99 - rawLatency.rttP99)}` +
        (budget === undefined
          ? ' (no round-1 figure to hold)'
          : ` (target ≤ +${budget} µs at p50)`),
    )
  }
  const churn = get('handshake', 'churn')
  if (churn?.closeP50 !== undefined && churn?.rttP50 !== undefined) {
    const over = churn.closeP50 - churn.rttP50
    out.push(
      `- ${mark(over < 5000)} close handshake p50 ${ms(churn.closeP50)} against an echo round trip of ${ms(churn.rttP50)}: ` +
        `${ms(over)} over one round trip (target < 5 ms; p99 ${ms(churn.closeP99)})`,
    )
  }
  return out
}

/** Handshake's server CPU per small message ÷ raw's, round by round when the rounds are there. */
function cpuRatio(rt, hs) {
  const p = paired(rt, 'handshake', 'raw', 'small', (x) => x.server_cpu_us_per_unit)
  return p ? pairedCell(p) : ratio(hs.small?.serverUsPerUnit, rt.rows.raw.small?.serverUsPerUnit)
}

function summaryTable(results) {
  const header = [
    'runtime',
    'small echo ÷ raw',
    '÷ Hono',
    '÷ crossws',
    'server CPU/msg ÷ raw',
    'large echo ÷ raw',
    'churn ÷ raw',
    'idle RSS over raw',
    'latency p50 over raw',
    'close p50 − RTT p50',
    'channel request ÷ event echo (server CPU µs/msg)',
    'channel echo ÷ event echo (server CPU µs/msg)',
  ]
  const rows = results.map((rt) => {
    const hs = rt.rows.handshake
    if (hs.unavailable) {
      return [
        rt.name,
        `Handshake not available: ${hs.unavailable}`,
        ...header.slice(2).map(() => ''),
      ]
    }
    const r = (w, peer) => {
      if (rt.rows[peer].unavailable) return '–'
      const metric = WORKLOADS[w].metric
      const field = { msgsPerS: 'msgs_per_s', mbPerS: 'mb_per_s', connsPerS: 'conns_per_s' }[metric]
      const p = paired(rt, 'handshake', peer, w, (x) => x[field])
      return p ? pairedCell(p) : ratio(hs[w]?.[metric], rt.rows[peer][w]?.[metric])
    }
    const channel = (w) => {
      const p = paired(rt, 'events', 'events', w, (x) => x.msgs_per_s, 'small')
      if (!p) return '–'
      const events = rt.rows.events
      return `${pairedCell(p)}; ${dec(events[w]?.serverUsPerUnit, 2)} against ${dec(events.small?.serverUsPerUnit, 2)}`
    }
    const idle = hs.idle && rt.rows.raw.idle && !rt.rows.raw.unavailable
    const churn = hs.churn
    return [
      rt.name,
      r('small', 'raw'),
      r('small', 'hono'),
      r('small', 'crossws'),
      rt.rows.raw.unavailable ? '–' : cpuRatio(rt, hs),
      r('large', 'raw'),
      r('churn', 'raw'),
      idle ? signedBytes(hs.idle.rssPerConn - rt.rows.raw.idle.rssPerConn) : '–',
      hs.latency?.rttP50 !== undefined &&
      rt.rows.raw.latency?.rttP50 !== undefined &&
      !rt.rows.raw.unavailable
        ? signedUs(hs.latency.rttP50 - rt.rows.raw.latency.rttP50)
        : '–',
      churn?.closeP50 !== undefined && churn?.rttP50 !== undefined
        ? ms(churn.closeP50 - churn.rttP50)
        : '–',
      channel('channelRequest'),
      channel('channelPublish'),
    ]
  })
  return table(header, rows)
}

function loadgenSection(results) {
  let worst
  for (const rt of results)
    for (const kind of KINDS)
      for (const w of [...Object.keys(WORKLOADS), ...Object.keys(CHANNEL_WORKLOADS)]) {
        const row = rt.rows[kind][w]
        if (row?.clientCores === undefined) continue
        if (!worst || row.clientCores > worst.cores) {
          const title = (WORKLOADS[w] ?? CHANNEL_WORKLOADS[w]).title
          worst = {
            cores: row.clientCores,
            where: `${rt.name} ${rt.rows[kind].name}, ${title.toLowerCase()}`,
            row,
          }
        }
      }
  if (!worst) return 'No row was measured.'
  return [
    `The load generator is a single-threaded C program (\`bench/client/loadgen.c\`, epoll, non-blocking sockets, masked frames), built by the bench with the machine's compiler. Every row above shows its CPU time per message and the share of one core it used over the measured window, next to the server's. Its busiest row was ${worst.where}: ${worst.cores.toFixed(2)} of one core (${worst.row.clientUsPerUnit?.toFixed(2)} µs per unit, against ${worst.row.serverUsPerUnit?.toFixed(2)} µs for the server). ` +
      (worst.cores < 0.9
        ? 'It never saturated its core, so it is not what limits any row.'
        : 'That row is close to saturating its core: treat its figure as a lower bound of the server.'),
    '',
    `On this 2-core machine the load generator and the server share the CPUs: when "loadgen cores" + "server cores" + "others cores" reach about 2, the machine, not the server alone, is the limit. Rows where they reached ${MACHINE_BOUND} are marked †; their throughput understates the server, and their CPU time per message is the fairer figure.`,
  ].join('\n')
}

function machineSection(info) {
  const m = info.machine
  const v = info.versions
  const c = info.config
  return [
    '| | |',
    '| --- | --- |',
    `| CPU | ${m.cpu}, ${m.nproc} cores (nproc) |`,
    `| memory | ${m.memory} |`,
    `| kernel | ${m.kernel} |`,
    `| load average before / after | ${m.loadBefore.map((x) => x.toFixed(2)).join(' ')} / ${m.loadAfter.map((x) => x.toFixed(2)).join(' ')} |`,
    `| Node | ${v.node} |`,
    `| Bun | ${v.bun} |`,
    `| Deno | ${v.deno} |`,
    `| workerd | ${v.workerd} |`,
    `| hono | ${v.hono} |`,
    `| @hono/node-server | ${v['@hono/node-server']} |`,
    `| ws | ${v.ws} |`,
    `| crossws | ${v.crossws} |`,
    `| Handshake | ${v.handshake} (this repository) |`,
    `| load generator compiler | ${v.compiler} |`,
    `| command | \`${info.command}\`${info.argv.length ? ` (arguments: \`${info.argv.join(' ')}\`)` : ''} |`,
    `| rounds | ${c.rounds} throughput rounds, ${c.idleRounds} idle-memory rounds; medians |`,
    `| windows | warmup ${c.warmupMs.small}/${c.warmupMs.large}/${c.warmupMs.churn}/${c.warmupMs.latency ?? '–'} ms, measured ${c.durationMs.small}/${c.durationMs.large}/${c.durationMs.churn}/${c.durationMs.latency ?? '–'} ms (small/large/churn/latency)${c.jitWarmupMs ? `; before round 1, an unmeasured ${c.jitWarmupMs} ms pass of the echo, channel and churn workloads over every server` : ''} |`,
    `| date | ${info.date} |`,
    `| wall time of the run | ${info.seconds.toFixed(0)} s |`,
  ].join('\n')
}

function profileSection(profile) {
  if (!profile) return ''
  const lines = [
    `## Profile: ${profile.runtime}, small-message echo`,
    '',
    `\`--cpu-prof\` on the server while loadgen ran the small-message echo for ${(profile.durationMs / 1000).toFixed(0)} s (one run each, not a median). Self time by where the code lives, as a share of the profile's busy samples, and per echoed message:`,
    '',
  ]
  // Categories under 0.2% of every profile are folded into one line.
  const share = (s, cat) => (s.categories[cat] ?? 0) / s.busyUs
  const all = [...new Set(profile.servers.flatMap((s) => Object.keys(s.categories)))]
  const cats = all.filter((cat) => profile.servers.some((s) => share(s, cat) >= 0.002))
  const rest = all.filter((cat) => !cats.includes(cat))
  for (const s of profile.servers) {
    s.categories['everything else'] = rest.reduce((sum, cat) => sum + (s.categories[cat] ?? 0), 0)
  }
  cats.push('everything else')
  const header = [
    'where',
    ...profile.servers.map((s) => `${s.kind} (share)`),
    ...profile.servers.map((s) => `${s.kind} (µs/msg)`),
  ]
  const rows = cats
    .map((cat) => [
      cat,
      ...profile.servers.map((s) => `${(((s.categories[cat] ?? 0) / s.busyUs) * 100).toFixed(1)}%`),
      ...profile.servers.map((s) => ((s.categories[cat] ?? 0) / s.messages).toFixed(2)),
    ])
    .sort((a, b) => Number.parseFloat(b[b.length - 1]) - Number.parseFloat(a[a.length - 1]))
  lines.push(table(header, rows), '')
  for (const s of profile.servers) {
    lines.push(
      `Top functions by self time, ${s.kind} (${int(s.messages)} messages, ${int(s.msgsPerS)} msg/s while profiled):`,
      '',
      table(
        ['function', 'where', 'self', 'µs/msg'],
        s.top.map((f) => [
          `\`${f.name}\``,
          f.where,
          `${((f.selfUs / s.busyUs) * 100).toFixed(1)}%`,
          (f.selfUs / s.messages).toFixed(3),
        ]),
      ),
      '',
    )
  }
  return lines.join('\n')
}

/** The whole BENCHMARKS.md. */
export function renderReport({ info, results, profiles, fanout, notes, chart, chartFromReport }) {
  const noise = otherLoad(results)
  const shared = noise.median > 0.1 || noise.max > 0.3
  const out = [
    '# Benchmarks',
    '',
    `Written by \`${info.command}\` (bench/run.mjs) on ${info.date.slice(0, 10)}. Every figure is the median of ${info.config.rounds} rounds, run A B C D / D C B A against the same load, with each server in its own process on 127.0.0.1${info.config.jitWarmupMs ? `, after an unmeasured ${info.config.jitWarmupMs / 1000} s pass of the echo, channel and churn workloads over every server (servers stay up across rounds, so this is the steady state a long-running server sees, not its JIT compiling)` : ''}; the figures in brackets are their spread, the least and the greatest of the rounds. A ratio of two servers is taken round by round (they ran side by side in each round), and a target counts as met (✅) only when its whole spread meets it: ↔ marks a spread that crosses its target (not met), ❌ one that misses it entirely. Compare each runtime only with itself: they ran the same workloads, but workerd runs under Miniflare and the runtimes differ widely.`,
    '',
  ]
  if (shared) {
    const how =
      noise.median > 0.1
        ? 'so absolute figures are low and noisy; the ratios, taken from interleaved rounds, are the figures to read'
        : 'mostly in short bursts; rows with a high "others cores" figure are the noisy ones'
    out.push(
      `> **This run shared the machine** with other work, which used a median of ${noise.median.toFixed(2)} cores (up to ${noise.max.toFixed(2)}) of the ${info.machine.nproc} during the measured windows (column "others cores"), ${how}.`,
      '',
    )
  }
  out.push(
    '## Summary: Handshake against the raw server and the peers',
    '',
    summaryTable(results),
    '',
    ...(fanoutRatios(fanout).length
      ? [
          'Fan-out (deliveries per second, Handshake ÷ each):',
          '',
          ...fanoutRatios(fanout).map((r) => `- ${r}`),
          '',
        ]
      : []),
    `![Throughput of each server as a ratio to the raw server, per runtime and workload](${chartFromReport})`,
    '',
    '## Targets',
    '',
  )
  for (const rt of results) out.push(`### ${rt.name}`, '', ...targets(rt), '')
  if (notes.trim()) out.push(notes.trim(), '')
  for (const rt of results) {
    out.push(`## ${rt.name}`, '')
    for (const w of Object.keys(WORKLOADS)) {
      out.push(`### ${WORKLOADS[w].title}: ${WORKLOADS[w].what}`, '', throughputTable(rt, w), '')
    }
    out.push(`### ${LATENCY.title}: ${LATENCY.what}`, '', latencyTable(rt), '')
    if (Object.keys(CHANNEL_WORKLOADS).some((w) => rt.rows.events?.[w])) {
      out.push(
        '### Channel protocol: `handshake.v1` frames against the raw event echo, on the same server',
        '',
        `The Handshake (events) server also serves a channel controller on \`/channels\` (\`bench/servers/echo-events-app.mjs\`). Each of its workloads ran beside that server's own small-message echo in the same rounds, with the same 64 connections and 16 frames in flight: ${Object.values(
          CHANNEL_WORKLOADS,
        )
          .map((c) => `${c.title.toLowerCase()}: ${c.what}`)
          .join('; ')}. The ratios are round by round.`,
        '',
        channelTable(rt),
        '',
      )
    }
    out.push(
      `### Idle memory: ${int(rt.idleConns)} open idle connections`,
      '',
      `Per connection: the server's memory with the connections open minus the same process empty, after a full GC${rt.heap ? '' : ' (workerd gives no heap figure and no GC from outside: RSS only)'}.`,
      '',
      idleTable(rt),
      '',
    )
  }
  if (fanout) out.push(renderFanout(fanout))
  for (const profile of profiles) out.push(profileSection(profile))
  out.push(
    '## Is the load generator the limit?',
    '',
    loadgenSection(results),
    '',
    '## Method',
    '',
    "- Each server is one small entry in `bench/servers/<runtime>/`: the raw runtime API, Hono's own helper, crossws's adapter, and Handshake with the README's echo controller (`for await (const msg of conn) await conn.send(msg.data)`, `bench/servers/echo-app.mjs`). Every entry echoes what it receives, text as text and binary as binary; loadgen counts wrong echoes.",
    '- Throughput rounds keep each server running and visit them in turn per workload; idle memory starts a fresh process per round and reads RSS from `/proc/<pid>/status` (the sum over its process tree) and the heap from the server itself after a full GC.',
    "- CPU time: loadgen reads its own with `getrusage`, the server's from `/proc/<pid>/stat` (all its threads and child processes) and the machine's from `/proc/stat`, over the same measured window. \"others cores\" is the machine's busy time that was neither: other processes, and kernel work charged to neither.",
    '- Latency: loadgen keeps one connection with one 32-byte text message in flight and sends the next as soon as the echo arrives (`loadgen latency`); round trips are timed to the microsecond. It shows what each server adds to a lone message, where throughput rows show what it costs under load.',
    "- Close-handshake latency is from loadgen sending its close frame to receiving the server's, in the churn workload; the target compares it with the echo round trip of the same connections.",
    "- workerd runs under Miniflare with compatibility date 2026-04-26 and the flag `no_websocket_standard_binary_type`: since 2026-03-17 binary messages reach a Worker as `Blob` unless it sets `binaryType`, and then Hono's helper echoes the text `[object Blob]` and crossws cannot read them synchronously. Handshake sets `binaryType` itself and is unaffected.",
    '',
    '## Machine and versions',
    '',
    machineSection(info),
    '',
    `Raw data of every round: \`bench/results/${info.command.includes('quick') ? 'quick/' : ''}results.json\`. Chart: \`${chart}\`.`,
    '',
  )
  return out.join('\n')
}

/** A short plain-text summary for the terminal. */
renderReport.summaryText = (results) => {
  const lines = []
  for (const rt of results) {
    lines.push(`\n${rt.name}`)
    for (const kind of KINDS) {
      const row = rt.rows[kind]
      if (row.unavailable) {
        lines.push(`  ${kind.padEnd(10)} not available: ${row.unavailable}`)
        continue
      }
      const raw = rt.rows.raw
      const r = (w) => ratio(row[w]?.[WORKLOADS[w].metric], raw[w]?.[WORKLOADS[w].metric])
      lines.push(
        `  ${kind.padEnd(10)} small ${int(row.small?.msgsPerS).padStart(10)} msg/s (${r('small')} raw)` +
          `  large ${dec(row.large?.mbPerS).padStart(7)} MB/s (${r('large')})` +
          `  churn ${int(row.churn?.connsPerS).padStart(6)} conn/s (${r('churn')})` +
          `  latency p50 ${us(row.latency?.rttP50).padStart(7)}` +
          `  idle ${bytes(row.idle?.rssPerConn)}/conn` +
          `  loadgen ${dec(row.small?.clientCores, 2)} cores`,
      )
    }
  }
  return `${lines.join('\n')}\n`
}
